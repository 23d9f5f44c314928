"""scipy's and statsmodels' answers for the paired tests, on cases a Rust test writes:

    python report/analysis/paired_reference.py CASES.json

CASES.json is {"wilcoxon": [[d, ...], ...], "mcnemar": [[b, c], ...]} (d = int8 − float per pair; b pairs
only float got right, c only int8 did). Prints {"wilcoxon": [{"statistic", "pvalue"}, ...], "mcnemar": [...]},
NaN written as null."""
import json
import math
import sys
import warnings

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar


def num(x):
    x = float(x)
    return None if math.isnan(x) else x


def main(path):
    cases = json.load(open(path))
    out = {"wilcoxon": [], "mcnemar": []}
    for d in cases["wilcoxon"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-zero cases: scipy warns of its 0/0
            r = stats.wilcoxon(np.array(d, dtype=np.float64))
        out["wilcoxon"].append({"statistic": num(r.statistic), "pvalue": num(r.pvalue)})
    for b, c in cases["mcnemar"]:
        r = mcnemar([[7, b], [c, 5]], exact=True)
        binom = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
        out["mcnemar"].append({"statistic": num(r.statistic), "pvalue": num(r.pvalue), "binomtest": num(binom)})
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
