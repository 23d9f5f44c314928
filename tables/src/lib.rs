//! A run's output (SPEC §8): each table's schema is defined once, filled with typed builders, and
//! written as Parquet part files that appear under their final name only when complete; plus the
//! model manifests that `run.json` records.

pub mod manifest;

/// The run record (SPEC §8) in a run folder; a multi-process run writes `run.process-<i>.json`.
pub const RUN_FILE: &str = "run.json";

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float32Array, Float32Builder, Float64Array, Float64Builder, Int32Array,
    Int32Builder, Int64Array, Int64Builder, ListArray, ListBuilder, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use operators::infer::Variant;
pub use operators::{AggregateRow, ErrorRow, ImageRow, PairRow, PerturbationRow, Stage, SubsetRow};

/// A table: its name (= folder), its schema, and how rows become a record batch.
pub trait Table: Sized {
    const NAME: &'static str;
    fn schema() -> SchemaRef;
    fn to_batch(rows: &[Self]) -> RecordBatch;
    /// How many (image, pair) units these rows finish, for progress: a pair row finishes one, an
    /// error before any model finishes one per pair.
    fn units_done(_rows: &[Self], _pairs: usize) -> usize {
        0
    }
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

fn list_of(name: &str, item: DataType) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", item, true))), false)
}

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<StringArray>())
}

fn lists_i32<'a>(values: impl Iterator<Item = &'a [i32]>) -> ArrayRef {
    let mut b = ListBuilder::new(Int32Builder::new());
    for v in values {
        b.values().append_slice(v);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn lists_f32<'a>(values: impl Iterator<Item = &'a [f32]>) -> ArrayRef {
    let mut b = ListBuilder::new(Float32Builder::new());
    for v in values {
        b.values().append_slice(v);
        b.append(true);
    }
    Arc::new(b.finish())
}

fn f32s(values: impl Iterator<Item = f32>) -> ArrayRef {
    let mut b = Float32Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn f64s(values: impl Iterator<Item = f64>) -> ArrayRef {
    let mut b = Float64Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn i32s(values: impl Iterator<Item = i32>) -> ArrayRef {
    let mut b = Int32Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn i64s(values: impl Iterator<Item = i64>) -> ArrayRef {
    let mut b = Int64Builder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn bools(values: impl Iterator<Item = bool>) -> ArrayRef {
    let mut b = BooleanBuilder::new();
    values.for_each(|v| b.append_value(v));
    Arc::new(b.finish())
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema, columns).expect("columns are built from the schema they are checked against")
}

impl Table for ImageRow {
    const NAME: &'static str = "images";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("image_id"),
            utf8("shard"),
            Field::new("label", DataType::Int32, false),
            utf8("model"),
            utf8("variant"),
            list_of("top5", DataType::Int32),
            list_of("top5_prob", DataType::Float32),
            Field::new("top1_correct", DataType::Boolean, false),
            Field::new("top5_correct", DataType::Boolean, false),
            Field::new("cam_h", DataType::Int32, false),
            Field::new("cam_w", DataType::Int32, false),
            list_of("cam", DataType::Float32),
            list_of("box", DataType::Int32),
            Field::new("iou", DataType::Float32, false),
            list_of("iou_curve", DataType::Float32),
            Field::new("act_mean", DataType::Float64, false),
            Field::new("act_std", DataType::Float64, false),
            Field::new("act_sparsity", DataType::Float64, false),
            Field::new("act_entropy", DataType::Float64, false),
            list_of("act_hist", DataType::Float32),
            Field::new("infer_ms", DataType::Float32, false),
            Field::new("cam_ms", DataType::Float32, false),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        batch(
            Self::schema(),
            vec![
                strings(rows.iter().map(|r| r.image_id.as_str())),
                strings(rows.iter().map(|r| r.shard.as_str())),
                i32s(rows.iter().map(|r| r.label)),
                strings(rows.iter().map(|r| r.model.as_str())),
                strings(rows.iter().map(|r| r.variant)),
                lists_i32(rows.iter().map(|r| r.top5.as_slice())),
                lists_f32(rows.iter().map(|r| r.top5_prob.as_slice())),
                bools(rows.iter().map(|r| r.top1_correct)),
                bools(rows.iter().map(|r| r.top5_correct)),
                i32s(rows.iter().map(|r| r.cam_h)),
                i32s(rows.iter().map(|r| r.cam_w)),
                lists_f32(rows.iter().map(|r| r.cam.as_slice())),
                lists_i32(rows.iter().map(|r| r.bbox.as_slice())),
                f32s(rows.iter().map(|r| r.iou)),
                lists_f32(rows.iter().map(|r| r.iou_curve.as_slice())),
                f64s(rows.iter().map(|r| r.act_mean)),
                f64s(rows.iter().map(|r| r.act_std)),
                f64s(rows.iter().map(|r| r.act_sparsity)),
                f64s(rows.iter().map(|r| r.act_entropy)),
                lists_f32(rows.iter().map(|r| r.act_hist.as_slice())),
                f32s(rows.iter().map(|r| r.infer_ms)),
                f32s(rows.iter().map(|r| r.cam_ms)),
            ],
        )
    }
}

impl Table for PairRow {
    const NAME: &'static str = "pairs";

    fn units_done(rows: &[Self], _pairs: usize) -> usize {
        rows.len()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("image_id"),
            utf8("model"),
            Field::new("rmse", DataType::Float32, false),
            Field::new("rmse_flipped", DataType::Float32, false),
            Field::new("top1_agree", DataType::Boolean, false),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        batch(
            Self::schema(),
            vec![
                strings(rows.iter().map(|r| r.image_id.as_str())),
                strings(rows.iter().map(|r| r.model.as_str())),
                f32s(rows.iter().map(|r| r.rmse)),
                f32s(rows.iter().map(|r| r.rmse_flipped)),
                bools(rows.iter().map(|r| r.top1_agree)),
            ],
        )
    }
}

impl Table for ErrorRow {
    const NAME: &'static str = "errors";

    fn units_done(rows: &[Self], pairs: usize) -> usize {
        rows.iter().map(|r| if r.model.is_some() { 1 } else { pairs }).sum()
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("image_id"),
            utf8("shard"),
            Field::new("model", DataType::Utf8, true),
            utf8("stage"),
            utf8("message"),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        let model: StringArray = rows.iter().map(|r| r.model.as_deref()).collect();
        batch(
            Self::schema(),
            vec![
                strings(rows.iter().map(|r| r.image_id.as_str())),
                strings(rows.iter().map(|r| r.shard.as_str())),
                Arc::new(model),
                strings(rows.iter().map(|r| r.stage.as_str())),
                strings(rows.iter().map(|r| r.message.as_str())),
            ],
        )
    }
}

impl Table for SubsetRow {
    const NAME: &'static str = "subset";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("model"),
            utf8("image_id"),
            Field::new("rank", DataType::Int32, false),
            Field::new("rmse", DataType::Float32, false),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        batch(
            Self::schema(),
            vec![
                strings(rows.iter().map(|r| r.model.as_str())),
                strings(rows.iter().map(|r| r.image_id.as_str())),
                i32s(rows.iter().map(|r| r.rank)),
                f32s(rows.iter().map(|r| r.rmse)),
            ],
        )
    }
}

impl Table for PerturbationRow {
    const NAME: &'static str = "perturbation";

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            utf8("image_id"),
            utf8("model"),
            utf8("variant"),
            Field::new("target", DataType::Int32, false),
            Field::new("deletion_auc", DataType::Float32, false),
            Field::new("insertion_auc", DataType::Float32, false),
            list_of("deletion_curve", DataType::Float32),
            list_of("insertion_curve", DataType::Float32),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        batch(
            Self::schema(),
            vec![
                strings(rows.iter().map(|r| r.image_id.as_str())),
                strings(rows.iter().map(|r| r.model.as_str())),
                strings(rows.iter().map(|r| r.variant.as_str())),
                i32s(rows.iter().map(|r| r.target)),
                f32s(rows.iter().map(|r| r.deletion_auc)),
                f32s(rows.iter().map(|r| r.insertion_auc)),
                lists_f32(rows.iter().map(|r| r.deletion_curve.as_slice())),
                lists_f32(rows.iter().map(|r| r.insertion_curve.as_slice())),
            ],
        )
    }
}

impl Table for AggregateRow {
    const NAME: &'static str = "aggregates";

    fn schema() -> SchemaRef {
        let f64_col = |name: &str| Field::new(name, DataType::Float64, false);
        Arc::new(Schema::new(vec![
            Field::new("epoch", DataType::Int64, false),
            utf8("model"),
            utf8("variant"),
            Field::new("images", DataType::Int64, false),
            f64_col("top1"),
            f64_col("top5"),
            f64_col("mean_iou"),
            f64_col("act_mean"),
            f64_col("act_std"),
            f64_col("act_sparsity"),
            f64_col("act_entropy"),
            f64_col("mean_rmse"),
            f64_col("mean_rmse_flipped"),
            f64_col("top1_agree"),
            Field::new("subset_size", DataType::Int64, false),
            f64_col("subset_mean_rmse"),
        ]))
    }

    fn to_batch(rows: &[Self]) -> RecordBatch {
        batch(
            Self::schema(),
            vec![
                i64s(rows.iter().map(|r| r.epoch)),
                strings(rows.iter().map(|r| r.model.as_str())),
                strings(rows.iter().map(|r| r.variant)),
                i64s(rows.iter().map(|r| r.images)),
                f64s(rows.iter().map(|r| r.top1)),
                f64s(rows.iter().map(|r| r.top5)),
                f64s(rows.iter().map(|r| r.mean_iou)),
                f64s(rows.iter().map(|r| r.act_mean)),
                f64s(rows.iter().map(|r| r.act_std)),
                f64s(rows.iter().map(|r| r.act_sparsity)),
                f64s(rows.iter().map(|r| r.act_entropy)),
                f64s(rows.iter().map(|r| r.mean_rmse)),
                f64s(rows.iter().map(|r| r.mean_rmse_flipped)),
                f64s(rows.iter().map(|r| r.top1_agree)),
                i64s(rows.iter().map(|r| r.subset_size)),
                f64s(rows.iter().map(|r| r.subset_mean_rmse)),
            ],
        )
    }
}

/// Writes `rows` as `out_dir/<table>/part-<part>.parquet`, through a temporary name so that a
/// reader (or a resumed run) never sees a half-written part. An empty part still gets a file, so
/// a finished unit is visible as such.
pub fn write_part<T: Table>(out_dir: &Path, part: &str, rows: &[T]) -> std::io::Result<PathBuf> {
    let dir = out_dir.join(T::NAME);
    std::fs::create_dir_all(&dir)?;
    let path = part_path(out_dir, T::NAME, part);
    let tmp = dir.join(format!(".part-{part}.parquet.tmp"));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = File::create(&tmp)?;
    let mut writer = ArrowWriter::try_new(file, T::schema(), Some(props)).map_err(std::io::Error::other)?;
    writer.write(&T::to_batch(rows)).map_err(std::io::Error::other)?;
    writer.into_inner().map_err(std::io::Error::other)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Where [`write_part`] puts a table's part (one per shard, named after it).
pub fn part_path(out_dir: &Path, table: &str, part: &str) -> PathBuf {
    out_dir.join(table).join(format!("part-{part}.parquet"))
}

/// Reads the named parts of a table (say, the shards one process wrote), in the order given; a
/// missing part is an error, since every finished shard has one.
pub fn read_parts(out_dir: &Path, table: &str, parts: &[String]) -> std::io::Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for part in parts {
        out.extend(read_part_file(&part_path(out_dir, table, part))?);
    }
    Ok(out)
}

fn read_part_file(path: &Path) -> std::io::Result<Vec<RecordBatch>> {
    let file = File::open(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(std::io::Error::other)?;
    reader.map(|batch| batch.map_err(std::io::Error::other)).collect()
}

/// Reads every part of a table back as record batches, in part-name order.
pub fn read_table(out_dir: &Path, table: &str) -> std::io::Result<Vec<RecordBatch>> {
    let dir = out_dir.join(table);
    let mut parts: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(read) => read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    parts.sort();
    let mut out = Vec::new();
    for part in parts {
        out.extend(read_part_file(&part)?);
    }
    Ok(out)
}

/// Tables a run reads back: a resumed or appended run takes finished shards' rows from their parts
/// instead of recomputing them.
pub trait ReadRows: Table {
    fn from_batch(batch: &RecordBatch) -> Vec<Self>;
}

fn list_f32_at(list: &ListArray, i: usize) -> Vec<f32> {
    let values = list.value(i);
    values.as_any().downcast_ref::<Float32Array>().expect("list<float32>").values().to_vec()
}

fn list_i32_at(list: &ListArray, i: usize) -> Vec<i32> {
    let values = list.value(i);
    values.as_any().downcast_ref::<Int32Array>().expect("list<int32>").values().to_vec()
}

fn variant_of(name: &str) -> Variant {
    match name {
        "float" => Variant::Float,
        _ => Variant::Quantized,
    }
}

impl ReadRows for ImageRow {
    fn from_batch(b: &RecordBatch) -> Vec<Self> {
        let s = |n| column::<StringArray>(b, n);
        let f32c = |n| column::<Float32Array>(b, n);
        let f64c = |n| column::<Float64Array>(b, n);
        let i32c = |n| column::<Int32Array>(b, n);
        let boolc = |n| column::<BooleanArray>(b, n);
        let list = |n| column::<ListArray>(b, n);
        (0..b.num_rows())
            .map(|i| {
                let bbox = list_i32_at(list("box"), i);
                ImageRow {
                    image_id: s("image_id").value(i).to_string(),
                    shard: s("shard").value(i).to_string(),
                    label: i32c("label").value(i),
                    model: s("model").value(i).to_string(),
                    variant: variant_of(s("variant").value(i)).as_str(),
                    top5: list_i32_at(list("top5"), i),
                    top5_prob: list_f32_at(list("top5_prob"), i),
                    top1_correct: boolc("top1_correct").value(i),
                    top5_correct: boolc("top5_correct").value(i),
                    cam_h: i32c("cam_h").value(i),
                    cam_w: i32c("cam_w").value(i),
                    cam: list_f32_at(list("cam"), i),
                    bbox: [bbox[0], bbox[1], bbox[2], bbox[3]],
                    iou: f32c("iou").value(i),
                    iou_curve: list_f32_at(list("iou_curve"), i),
                    act_mean: f64c("act_mean").value(i),
                    act_std: f64c("act_std").value(i),
                    act_sparsity: f64c("act_sparsity").value(i),
                    act_entropy: f64c("act_entropy").value(i),
                    act_hist: list_f32_at(list("act_hist"), i),
                    infer_ms: f32c("infer_ms").value(i),
                    cam_ms: f32c("cam_ms").value(i),
                }
            })
            .collect()
    }
}

impl ReadRows for PairRow {
    fn from_batch(b: &RecordBatch) -> Vec<Self> {
        let s = |n| column::<StringArray>(b, n);
        (0..b.num_rows())
            .map(|i| PairRow {
                image_id: s("image_id").value(i).to_string(),
                model: s("model").value(i).to_string(),
                rmse: column::<Float32Array>(b, "rmse").value(i),
                rmse_flipped: column::<Float32Array>(b, "rmse_flipped").value(i),
                top1_agree: column::<BooleanArray>(b, "top1_agree").value(i),
            })
            .collect()
    }
}

impl ReadRows for PerturbationRow {
    fn from_batch(b: &RecordBatch) -> Vec<Self> {
        let s = |n| column::<StringArray>(b, n);
        let f32c = |n| column::<Float32Array>(b, n);
        (0..b.num_rows())
            .map(|i| PerturbationRow {
                image_id: s("image_id").value(i).to_string(),
                model: s("model").value(i).to_string(),
                variant: variant_of(s("variant").value(i)),
                target: column::<Int32Array>(b, "target").value(i),
                deletion_auc: f32c("deletion_auc").value(i),
                insertion_auc: f32c("insertion_auc").value(i),
                deletion_curve: list_f32_at(column::<ListArray>(b, "deletion_curve"), i),
                insertion_curve: list_f32_at(column::<ListArray>(b, "insertion_curve"), i),
            })
            .collect()
    }
}

/// Reads one part file's rows, or `None` when the part does not exist.
pub fn read_part<T: ReadRows>(out_dir: &Path, part: &str) -> std::io::Result<Option<Vec<T>>> {
    let path = out_dir.join(T::NAME).join(format!("part-{part}.parquet"));
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(std::io::Error::other)?;
    let mut rows = Vec::new();
    for batch in reader {
        rows.extend(T::from_batch(&batch.map_err(std::io::Error::other)?));
    }
    Ok(Some(rows))
}

/// Every row of a table, all parts.
pub fn read_rows<T: ReadRows>(out_dir: &Path) -> std::io::Result<Vec<T>> {
    Ok(read_table(out_dir, T::NAME)?.iter().flat_map(T::from_batch).collect())
}

/// Columns that measure time, and so differ between any two runs of the same job.
pub const TIMING_COLUMNS: [&str; 2] = ["infer_ms", "cam_ms"];

/// A table's rows as sorted text lines, timing columns left out: two runs with equal results give
/// equal lines, whatever their part files and row order.
pub fn canonical_rows(out_dir: &Path, table: &str) -> std::io::Result<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in read_table(out_dir, table)? {
        let schema = batch.schema();
        let mut columns = Vec::new();
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            if !TIMING_COLUMNS.contains(&field.name().as_str()) {
                columns.push((field.name().clone(), ArrayFormatter::try_new(col.as_ref(), &options).map_err(std::io::Error::other)?));
            }
        }
        rows.extend((0..batch.num_rows()).map(|i| {
            columns.iter().map(|(name, f)| format!("{name}={}", f.value(i))).collect::<Vec<_>>().join(" | ")
        }));
    }
    rows.sort();
    Ok(rows)
}

/// Typed column access for readers of these tables (report, tests).
pub fn column<'a, A: Array + 'static>(batch: &'a RecordBatch, name: &str) -> &'a A {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column `{name}` missing"))
        .as_any()
        .downcast_ref::<A>()
        .unwrap_or_else(|| panic!("column `{name}` has an unexpected type"))
}

pub type Utf8Col = StringArray;
pub type BoolCol = BooleanArray;
pub type F32Col = Float32Array;
pub type F64Col = Float64Array;
pub type I64Col = Int64Array;
pub type I32Col = Int32Array;
pub type ListCol = ListArray;
