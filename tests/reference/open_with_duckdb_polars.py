"""Independent check that qcam's Parquet is what SPEC §8 says, as DuckDB and Polars see it.

The expected column names and types are written out here from the SPEC, not taken from qcam.
Prints a JSON summary (row counts per table and reader) for the Rust test to compare."""
import json
import sys

import duckdb
import polars as pl

# SPEC §8, column by column.
SPEC = {
    "images": [
        ("image_id", "utf8"), ("shard", "utf8"), ("label", "int32"), ("model", "utf8"), ("variant", "utf8"),
        ("top5", "list<int32>"), ("top5_prob", "list<float32>"), ("top1_correct", "bool"), ("top5_correct", "bool"),
        ("cam_h", "int32"), ("cam_w", "int32"), ("cam", "list<float32>"), ("box", "list<int32>"),
        ("iou", "float32"), ("iou_curve", "list<float32>"), ("act_mean", "float64"), ("act_std", "float64"),
        ("act_sparsity", "float64"), ("act_entropy", "float64"), ("act_hist", "list<float32>"),
        ("infer_ms", "float32"), ("cam_ms", "float32"),
    ],
    "pairs": [("image_id", "utf8"), ("model", "utf8"), ("rmse", "float32"), ("rmse_flipped", "float32"),
              ("top1_agree", "bool")],
    "subset": [("model", "utf8"), ("image_id", "utf8"), ("rank", "int32"), ("rmse", "float32")],
    "wsol": [("image_id", "utf8"), ("shard", "utf8"), ("model", "utf8"), ("variant", "utf8"), ("method", "utf8"),
             ("box", "list<int32>"), ("iou", "float32"), ("iou_curve", "list<float32>"), ("top1_loc", "bool")],
    "perturbation": [("image_id", "utf8"), ("model", "utf8"), ("variant", "utf8"), ("method", "utf8"), ("target", "int32"),
                     ("deletion_auc", "float32"), ("insertion_auc", "float32"),
                     ("deletion_curve", "list<float32>"), ("insertion_curve", "list<float32>")],
}
DUCK = {"utf8": "VARCHAR", "int32": "INTEGER", "bool": "BOOLEAN", "float32": "FLOAT", "float64": "DOUBLE",
        "list<int32>": "INTEGER[]", "list<float32>": "FLOAT[]"}
POLARS = {"utf8": pl.String, "int32": pl.Int32, "bool": pl.Boolean, "float32": pl.Float32, "float64": pl.Float64,
          "list<int32>": pl.List(pl.Int32), "list<float32>": pl.List(pl.Float32)}


def main(run_dir):
    out = {}
    con = duckdb.connect()
    for table, cols in SPEC.items():
        glob = f"{run_dir}/{table}/*.parquet"
        desc = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{glob}')").fetchall()
        got = [(name, typ) for name, typ, *_ in desc]
        want = [(name, DUCK[t]) for name, t in cols]
        assert got == want, f"duckdb {table}: {got} != {want}"
        df = pl.read_parquet(glob)
        pwant = {name: POLARS[t] for name, t in cols}
        assert list(df.columns) == [c for c, _ in cols], f"polars {table} columns {df.columns}"
        for name, dtype in df.schema.items():
            assert dtype == pwant[name], f"polars {table}.{name}: {dtype} != {pwant[name]}"
        n_duck = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()[0]
        out[table] = {"duckdb": n_duck, "polars": df.height}
    # Fixed-length lists hold what the SPEC says they hold.
    bad = con.execute(f"""
        SELECT count(*) FROM read_parquet('{run_dir}/images/*.parquet')
        WHERE len(box) != 4 OR len(iou_curve) != 100 OR len(act_hist) != 256 OR len(top5) != 5
           OR len(cam) != cam_h * cam_w OR variant NOT IN ('float', 'quantized')""").fetchone()[0]
    out["malformed_image_rows"] = bad
    steps = json.load(open(f"{run_dir}/run.json"))["job"]["perturbation"]["steps"]
    out["malformed_perturbation_rows"] = con.execute(f"""
        SELECT count(*) FROM read_parquet('{run_dir}/perturbation/*.parquet')
        WHERE len(deletion_curve) != {steps} + 1 OR len(insertion_curve) != {steps} + 1
           OR variant NOT IN ('float', 'quantized')
           OR method NOT IN ('eigencam', 'gaussian', 'random')""").fetchone()[0]
    # EigenCAM's wsol rows repeat its images rows; top1_loc is the SPEC's rule on the row's iou.
    out["malformed_wsol_rows"] = con.execute(f"""
        SELECT count(*) FROM read_parquet('{run_dir}/wsol/*.parquet') w
        LEFT JOIN read_parquet('{run_dir}/images/*.parquet') i USING (image_id, model, variant)
        WHERE len(w.box) != 4 OR len(w.iou_curve) != 100 OR w.method NOT IN ('eigencam', 'gaussian', 'full')
           OR w.top1_loc != (i.top1_correct AND w.iou >= 0.5)
           OR (w.method = 'eigencam' AND (w.box != i.box OR w.iou != i.iou OR w.iou_curve != i.iou_curve))""").fetchone()[0]
    out["baseline_boxes"] = dict(con.execute(f"""
        SELECT method, count(DISTINCT box) FROM read_parquet('{run_dir}/wsol/*.parquet')
        WHERE method != 'eigencam' GROUP BY method""").fetchall())
    hist = pl.read_parquet(f"{run_dir}/images/*.parquet").select(pl.col("act_hist").list.sum().alias("s"))
    out["max_hist_sum_error"] = float((hist["s"] - 1.0).abs().max())
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
