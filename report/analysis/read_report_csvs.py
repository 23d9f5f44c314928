"""DuckDB and Polars read the CSVs of `qcam report` with the types the README's Output section gives.

    python report/analysis/read_report_csvs.py RUN_DIR/report

Every estimate `X` is followed by `X_lo` and `X_hi`, all three DOUBLE (DuckDB) / Float64 (Polars);
table12_paired.csv has exactly the columns and types written out below, which must also be the README's
schema table for it. Prints {"files": {name: {"duckdb": rows, "polars": rows}}, "interval_columns": k,
"table12_columns": m} for the Rust test to compare with what it reads itself."""
import json
import pathlib
import re
import sys

import duckdb
import polars as pl

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"
ESTIMATES = ("float_mean", "quantized_mean", "mean_diff")
TABLE12 = (
    [("model", "utf8"), ("weights", "utf8"), ("scope", "utf8"), ("metric", "utf8"), ("images", "int64")]
    + [(e + s, "float64") for e in ESTIMATES for s in ("", "_lo", "_hi")]
    + [("test", "utf8"), ("nonzero", "int64"), ("statistic", "float64"), ("p_value", "float64"),
       ("p_method", "utf8")]
)
DUCK = {"utf8": "VARCHAR", "int64": "BIGINT", "float64": "DOUBLE"}
POLARS = {"utf8": pl.String, "int64": pl.Int64, "float64": pl.Float64}


def readme_schema(file):
    """The (column, type) rows of the README's schema table under the heading that names `file`."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("####") and f"`{file}`" in line)
    rows = []
    for line in lines[start + 1:]:
        m = re.match(r"\| `([a-z0-9_]+)` \| (\w+) \|", line)
        if m:
            rows.append((m.group(1), m.group(2)))
        elif rows and not line.startswith("|"):
            break
    return rows


def main(report_dir):
    con = duckdb.connect()
    out = {"files": {}, "interval_columns": 0}
    for path in sorted(pathlib.Path(report_dir).glob("*.csv")):
        desc = con.execute(f"DESCRIBE SELECT * FROM read_csv('{path}')").fetchall()
        duck = {name: typ for name, typ, *_ in desc}
        df = pl.read_csv(path)
        names = list(df.columns)
        assert names == list(duck), f"{path.name}: duckdb {list(duck)} vs polars {names}"
        for i, name in enumerate(names):
            if not name.endswith("_lo"):
                continue
            base = name[:-3]
            assert names[i - 1] == base and names[i + 1] == base + "_hi", f"{path.name}: {names[i - 1:i + 2]}"
            for c in (base, name, base + "_hi"):
                assert duck[c] == "DOUBLE" and df.schema[c] == pl.Float64, f"{path.name}.{c}: {duck[c]} {df.schema[c]}"
            out["interval_columns"] += 1
        if path.name == "table12_paired.csv":
            assert readme_schema(path.name) == TABLE12, f"README schema of {path.name}: {readme_schema(path.name)}"
            assert [(n, duck[n]) for n in names] == [(n, DUCK[t]) for n, t in TABLE12], f"duckdb {duck}"
            assert [(n, df.schema[n]) for n in names] == [(n, POLARS[t]) for n, t in TABLE12], f"polars {df.schema}"
            out["table12_columns"] = len(names)
        n_duck = con.execute(f"SELECT count(*) FROM read_csv('{path}')").fetchone()[0]
        out["files"][path.name] = {"duckdb": n_duck, "polars": df.height}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
