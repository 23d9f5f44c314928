"""Tables 3 and 10 of `qcam report`, computed outside qcam from a run's Parquet folders: once by
DuckDB running table3.sql and table10.sql, once by the Polars expressions below.

    python report/analysis/tables.py RUN_DIR

prints {"duckdb": {"table03": [row, ...], "table10": [...]}, "polars": {...}} as JSON; each row
is an object whose keys are the CSV columns of RUN_DIR/report/table03_rmse.csv and
table10_perturbation.csv."""
import json
import pathlib
import sys

import duckdb
import polars as pl

HERE = pathlib.Path(__file__).resolve().parent
QUERIES = {"table03": "table3.sql", "table10": "table10.sql"}
# SPEC §8 columns these queries use, for a run without the table (an older qcam's): it reads as empty.
COLUMNS = {
    "pairs": {"image_id": pl.String, "model": pl.String, "rmse": pl.Float32, "rmse_flipped": pl.Float32},
    "subset": {"model": pl.String, "image_id": pl.String, "rank": pl.Int32, "rmse": pl.Float32},
    "perturbation": {"image_id": pl.String, "model": pl.String, "variant": pl.String, "method": pl.String,
                     "deletion_auc": pl.Float32, "insertion_auc": pl.Float32},
}
DUCK_TYPES = {pl.String: "VARCHAR", pl.Int32: "INTEGER", pl.Float32: "FLOAT"}


def parts(run_dir, table):
    return f"{run_dir}/{table}/*.parquet"


def present(run_dir, table):
    return any(pathlib.Path(run_dir, table).glob("*.parquet"))


def with_duckdb(run_dir):
    con = duckdb.connect()
    for table, columns in COLUMNS.items():
        if present(run_dir, table):
            source = f"SELECT * FROM read_parquet('{parts(run_dir, table)}')"
        else:
            source = "SELECT " + ", ".join(f"NULL::{DUCK_TYPES[t]} AS {c}" for c, t in columns.items()) + " WHERE false"
        con.execute(f"CREATE VIEW {table} AS {source}")
    out = {}
    for name, file in QUERIES.items():
        cur = con.execute((HERE / file).read_text())
        columns = [d[0] for d in cur.description]
        out[name] = [dict(zip(columns, row)) for row in cur.fetchall()]
    return out


def scan(run_dir, table):
    if present(run_dir, table):
        return pl.scan_parquet(parts(run_dir, table))
    return pl.LazyFrame(schema=COLUMNS[table])


def with_polars(run_dir):
    pairs = scan(run_dir, "pairs")
    subset = scan(run_dir, "subset").select("model", "image_id", in_subset=pl.lit(True))
    rmse, flipped = pl.col("rmse").cast(pl.Float64), pl.col("rmse_flipped").cast(pl.Float64)
    closer = (pl.col("rmse_flipped") < pl.col("rmse")).cast(pl.Float64)
    sub = pl.col("in_subset")
    table03 = (
        pairs.join(subset, on=["model", "image_id"], how="left")
        .with_columns(sub.fill_null(False))
        .group_by("model")
        .agg(
            images=pl.len(),
            mean_rmse=rmse.mean(),
            mean_rmse_flipped=flipped.mean(),
            flipped_closer_pct=100 * closer.mean(),
            subset_images=sub.sum(),
            subset_mean_rmse=rmse.filter(sub).mean(),
            subset_mean_rmse_flipped=flipped.filter(sub).mean(),
            subset_flipped_closer_pct=100 * closer.filter(sub).mean(),
        )
        .sort("model")
    )
    table10 = (
        scan(run_dir, "perturbation")
        .filter(pl.col("method") == "eigencam")
        .group_by("model", "variant")
        .agg(
            images=pl.len(),
            deletion_auc=pl.col("deletion_auc").cast(pl.Float64).mean(),
            insertion_auc=pl.col("insertion_auc").cast(pl.Float64).mean(),
        )
        .sort("model", "variant")
    )
    return {"table03": table03.collect().to_dicts(), "table10": table10.collect().to_dicts()}


if __name__ == "__main__":
    run_dir = sys.argv[1]
    print(json.dumps({"duckdb": with_duckdb(run_dir), "polars": with_polars(run_dir)}, indent=1))
