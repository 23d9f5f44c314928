"""The intervals and paired tests of `qcam report`, computed outside qcam from a run's Parquet folders:
the resample draws redrawn from the README's recipe, each interval by `scipy.stats.bootstrap(method=
'percentile')` on exactly those draws, Wilcoxon by `scipy.stats.wilcoxon`, McNemar by statsmodels.

    python report/analysis/uncertainty.py RUN_DIR

prints {"<csv stem>": [row, ...], ...} as JSON; each row's keys are columns of RUN_DIR/report/<stem>.csv.
Only what a run without missing rows needs is here (every variant of every image present)."""
import json
import pathlib
import sys

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

DEFAULTS = {"resamples": 1000, "seed": 0x5143414D, "confidence": 0.95}
MASK = (1 << 64) - 1
VARIANTS = ("float", "quantized")
DELTAS = np.array([0.3, 0.5, 0.7], dtype=np.float32)


def fnv1a64(key):
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def draws(seed, key, n, resamples):
    """Resample r's indices are the next n SplitMix64 outputs x, each mapped to (x * n) >> 64."""
    state = seed ^ fnv1a64(key)
    out = np.empty(resamples * n, dtype=np.int64)
    for k in range(resamples * n):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out[k] = ((z ^ (z >> 31)) * n) >> 64
    return out.reshape(resamples, n)


class Drawn(np.random.Generator):
    """A Generator whose `integers` returns the given draws, so scipy resamples exactly those."""

    def __init__(self, idx):
        super().__init__(np.random.PCG64(0))
        self.idx = idx

    def integers(self, low, high=None, size=None, dtype="int64", endpoint=False):
        assert (low, high, tuple(size)) == (0, self.idx.shape[1], self.idx.shape), (low, high, size)
        return self.idx


class Group:
    """One pair's images over one scope, in image_id order, with the draws of its key."""

    def __init__(self, config, key, ids):
        self.ids, self.n, self.config = ids, len(ids), config
        self.idx = draws(config["seed"], key, self.n, config["resamples"])

    def estimate(self, stat):
        """stat maps an (R, n) matrix of image indices to R values; returns value, lo, hi."""
        value = float(stat(np.arange(self.n)[None, :])[0])
        res = stats.bootstrap((np.arange(self.n),), lambda i, axis=-1: stat(np.atleast_2d(i)),
                              n_resamples=self.config["resamples"], method="percentile", vectorized=True,
                              confidence_level=self.config["confidence"], rng=Drawn(self.idx))
        return value, float(res.confidence_interval.low), float(res.confidence_interval.high)

    def mean(self, x):
        return self.estimate(lambda i: x[i].mean(axis=-1))


def put(row, name, est):
    row[name], row[name + "_lo"], row[name + "_hi"] = est


def aligned(frame, ids, column):
    """`column` of `frame` (one row per image) in the group's order, as float64."""
    by_id = dict(zip(frame["image_id"].to_list(), frame[column].cast(pl.Float64).to_list()))
    return np.array([by_id[i] for i in ids], dtype=np.float64)


def max_box_acc_v2_pct(curves):
    def stat(i):
        hits = (curves[i][..., None] >= DELTAS).sum(axis=1)  # (R, 100, 3)
        box_acc = (hits.max(axis=1) / i.shape[-1]).astype(np.float32)
        return 100.0 * ((box_acc.astype(np.float64).sum(axis=-1)) / 3.0).astype(np.float32).astype(np.float64)
    return stat


def dice_of_means(hf, hq):
    def stat(i):
        f, q = hf[i].astype(np.float64).mean(axis=1), hq[i].astype(np.float64).mean(axis=1)
        return (2 * np.minimum(f, q)).sum(axis=-1) / (f.sum(axis=-1) + q.sum(axis=-1))
    return stat


def paired_tests(metric, f, q):
    d = q - f
    if metric in RIGHT_OR_WRONG:
        b, c = int(((f > 0) & (q == 0)).sum()), int(((f == 0) & (q > 0)).sum())
        both, neither = int(((f > 0) & (q > 0)).sum()), int(((f == 0) & (q == 0)).sum())
        r = mcnemar([[both, b], [c, neither]], exact=True)
        return {"test": "mcnemar", "nonzero": b + c, "statistic": float(r.statistic), "p_value": float(r.pvalue),
                "p_method": "exact"}
    r = stats.wilcoxon(q, f)
    n, nonzero = len(d), int((d != 0).sum())
    tied = len(np.unique(np.abs(d[d != 0]))) < nonzero
    if nonzero == 0:
        # scipy: 1.0 up to 13 pairs, NaN (0/0) above; the report gives 1 for any n (README).
        method, p = "all_zero", 1.0
    elif n <= 50 and nonzero == n and not tied:
        method, p = "exact", float(r.pvalue)
    elif n <= 13:
        method, p = "exact_flips", float(r.pvalue)
    else:
        method, p = "normal", float(r.pvalue)
    return {"test": "wilcoxon", "nonzero": nonzero, "statistic": float(r.statistic), "p_value": p, "p_method": method}


IMAGE_METRICS = {  # report metric → how one images row gives it
    "top1_pct": lambda df: 100.0 * df["top1_correct"].cast(pl.Float64),
    "top5_pct": lambda df: 100.0 * df["top5_correct"].cast(pl.Float64),
    "iou": lambda df: df["iou"].cast(pl.Float64),
    "top1_loc_pct": lambda df: 100.0 * (df["top1_correct"] & (df["iou"] >= 0.5)).cast(pl.Float64),
    "act_mean": lambda df: df["act_mean"],
    "act_std": lambda df: df["act_std"],
    "act_sparsity_pct": lambda df: df["act_sparsity"],
    "act_entropy_bits": lambda df: df["act_entropy"],
    "infer_ms": lambda df: df["infer_ms"].cast(pl.Float64),
    "cam_ms": lambda df: df["cam_ms"].cast(pl.Float64),
    "total_ms": lambda df: df["infer_ms"].cast(pl.Float64) + df["cam_ms"].cast(pl.Float64),
}
RIGHT_OR_WRONG = {"top1_pct", "top5_pct", "top1_loc_pct"}
COMPARED = ["top1_pct", "top5_pct", "iou", "top1_loc_pct", "act_mean", "act_std", "act_sparsity_pct",
            "act_entropy_bits"]


def main(run_dir):
    run_dir = pathlib.Path(run_dir)
    job = json.loads((run_dir / "run.json").read_text())["job"]
    config = {**DEFAULTS, **job.get("report", {})}
    read = lambda t: pl.read_parquet(f"{run_dir}/{t}/*.parquet")  # noqa: E731
    images, pairs, subset, everything = read("images"), read("pairs"), read("subset"), read("perturbation")
    perturbation = everything.filter(pl.col("method") == "eigencam")
    baseline_auc = everything.filter(pl.col("method") != "eigencam")
    wsol_table = read("wsol")
    images = images.with_columns(**{m: f(images) for m, f in IMAGE_METRICS.items()})
    out = {k: [] for k in ["table01_classification", "table03_rmse", "table04_activations", "figure02_dice",
                           "table06_subset_accuracy", "table08_timing", "table10_perturbation", "table11_wsol",
                           "table12_paired", "table13_baselines"]}
    for model in sorted(images["model"].unique().to_list()):
        img = images.filter(pl.col("model") == model)
        pr = pairs.filter(pl.col("model") == model)
        ids = {
            "all": sorted(set(img["image_id"].to_list()) | set(pr["image_id"].to_list())),
            "subset": sorted(subset.filter(pl.col("model") == model)["image_id"].to_list()),
            "perturbed": sorted(set(perturbation.filter(pl.col("model") == model)["image_id"].to_list())),
            "baselined": sorted(set(baseline_auc.filter(pl.col("model") == model)["image_id"].to_list())),
        }
        groups = {s: Group(config, f"{model}/{s}", i) for s, i in ids.items()}
        by_variant = {v: img.filter(pl.col("variant") == v) for v in VARIANTS}
        for scope in ("all", "subset"):
            g = groups[scope]
            x = {(v, m): aligned(by_variant[v], g.ids, m) for v in VARIANTS for m in IMAGE_METRICS}
            t03 = {}
            for name, col in (("rmse", "rmse"), ("rmse_flipped", "rmse_flipped")):
                t03[name] = g.mean(aligned(pr, g.ids, col))
            closer = (pr["rmse_flipped"] < pr["rmse"]).cast(pl.Float64) * 100.0
            t03["flipped_closer_pct"] = g.mean(aligned(pr.with_columns(c=closer), g.ids, "c"))
            prefix = "" if scope == "all" else "subset_"
            if scope == "all":
                row03 = {"model": model}
                out["table03_rmse"].append(row03)
            row03[prefix + "images"] = g.n
            put(row03, prefix + "mean_rmse", t03["rmse"])
            put(row03, prefix + "mean_rmse_flipped", t03["rmse_flipped"])
            put(row03, prefix + "flipped_closer_pct", t03["flipped_closer_pct"])
            for v in VARIANTS:
                key = {"model": model, "variant": v}
                frame = by_variant[v].filter(pl.col("image_id").is_in(g.ids)).sort("image_id")
                curves = np.array(frame["iou_curve"].to_list(), dtype=np.float32)
                wsol = {**key, "scope": scope, "images": g.n}
                put(wsol, "mean_iou", g.mean(x[(v, "iou")]))
                put(wsol, "maxboxacc_v2_pct", g.estimate(max_box_acc_v2_pct(curves)))
                put(wsol, "top1_loc_pct", g.mean(x[(v, "top1_loc_pct")]))
                out["table11_wsol"].append(wsol)
                if scope == "all":
                    t01 = {**key, "images": g.n}
                    for m in ("top1_pct", "top5_pct", "infer_ms"):
                        put(t01, m, g.mean(x[(v, m)]))
                    out["table01_classification"].append(t01)
                    t08 = {**key, "images": g.n}
                    for m in ("infer_ms", "cam_ms", "total_ms"):
                        put(t08, m, g.mean(x[(v, m)]))
                    tf, tv = x[("float", "total_ms")], x[(v, "total_ms")]
                    put(t08, "speedup_vs_float", g.estimate(lambda i: tf[i].mean(axis=-1) / tv[i].mean(axis=-1)))
                    out["table08_timing"].append(t08)
                else:
                    t04 = {**key, "subset_images": g.n}
                    for m in ("act_entropy_bits", "act_std", "act_sparsity_pct"):
                        put(t04, m, g.mean(x[(v, m)]))
                    out["table04_activations"].append(t04)
                    t06 = {**key, "subset_images": g.n}
                    for m in ("top1_pct", "top5_pct"):
                        put(t06, m, g.mean(x[(v, m)]))
                    out["table06_subset_accuracy"].append(t06)
            if scope == "subset":
                hist = {v: np.array(by_variant[v].filter(pl.col("image_id").is_in(g.ids)).sort("image_id")["act_hist"]
                                    .to_list(), dtype=np.float32) for v in VARIANTS}
                dice = {"model": model, "subset_images": g.n}
                put(dice, "dice", g.estimate(dice_of_means(hist["float"], hist["quantized"])))
                out["figure02_dice"].append(dice)
            for m in COMPARED:
                out["table12_paired"].append(paired_row(model, scope, m, g, x[("float", m)], x[("quantized", m)]))
        g = groups["perturbed"]
        pt = perturbation.filter(pl.col("model") == model)
        auc = {(v, m): aligned(pt.filter(pl.col("variant") == v), g.ids, m)
               for v in VARIANTS for m in ("deletion_auc", "insertion_auc")}
        for v in VARIANTS:
            row = {"model": model, "variant": v, "images": g.n}
            for m in ("deletion_auc", "insertion_auc"):
                put(row, m, g.mean(auc[(v, m)]))
            out["table10_perturbation"].append(row)
        for m in ("deletion_auc", "insertion_auc"):
            out["table12_paired"].append(paired_row(model, "perturbed", m, g, auc[("float", m)], auc[("quantized", m)]))
        out["table13_baselines"].extend(baseline_rows(groups, model, wsol_table, everything))
    print(json.dumps(out, indent=1))


def baseline_rows(groups, model, wsol, perturbation):
    """Table 13: per variant and method, WSOL over all images (the `wsol` table, EigenCAM's rows
    included) and deletion/insertion over the baselined images, EigenCAM's on the same images."""
    g, b = groups["all"], groups["baselined"]
    rows = []
    for v in VARIANTS:
        for method in ("eigencam", "gaussian", "full", "random"):
            row = {"model": model, "variant": v, "method": method}
            w = wsol.filter((pl.col("model") == model) & (pl.col("variant") == v) & (pl.col("method") == method))
            if w.height:
                w = w.filter(pl.col("image_id").is_in(g.ids)).sort("image_id")
                row["images"] = g.n
                put(row, "mean_iou", g.mean(aligned(w, g.ids, "iou")))
                put(row, "maxboxacc_v2_pct", g.estimate(max_box_acc_v2_pct(np.array(w["iou_curve"].to_list(), dtype=np.float32))))
                put(row, "top1_loc_pct", g.mean(100.0 * aligned(w, g.ids, "top1_loc")))
            p = perturbation.filter((pl.col("model") == model) & (pl.col("variant") == v) & (pl.col("method") == method)
                                    & pl.col("image_id").is_in(b.ids))
            if p.height:
                row["auc_images"] = b.n
                for m in ("deletion_auc", "insertion_auc"):
                    put(row, m, b.mean(aligned(p, b.ids, m)))
            if len(row) > 3:
                rows.append(row)
    return rows


def paired_row(model, scope, metric, g, f, q):
    row = {"model": model, "scope": scope, "metric": metric, "images": g.n}
    put(row, "float_mean", g.mean(f))
    put(row, "quantized_mean", g.mean(q))
    put(row, "mean_diff", g.mean(q - f))
    return {**row, **paired_tests(metric, f, q)}


if __name__ == "__main__":
    main(sys.argv[1])
