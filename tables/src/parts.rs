//! Part files: `out_dir/<table>/part-<part>.parquet`, one per shard or per pair.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{Table, TableError};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io { path: path.into(), source }
}

fn parquet(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> TableError + '_ {
    move |source| TableError::Parquet { path: path.into(), source }
}

/// Where [`write_part`] puts a table's part (one per shard, named after it).
pub fn part_path(out_dir: &Path, table: &str, part: &str) -> PathBuf {
    out_dir.join(table).join(format!("part-{part}.parquet"))
}

/// Writes `rows` as `out_dir/<table>/part-<part>.parquet`, through a temporary name so that a
/// reader (or a resumed run) never sees a half-written part. An empty part still gets a file, so
/// a finished unit is visible as such.
pub fn write_part<T: Table>(out_dir: &Path, part: &str, rows: &[T]) -> Result<PathBuf, TableError> {
    let path = part_path(out_dir, T::NAME, part);
    write_part_file(&path, rows)?;
    Ok(path)
}

/// Writes `rows` as the Parquet file `path`, through a temporary name in the same folder.
pub fn write_part_file<T: Table>(path: &Path, rows: &[T]) -> Result<(), TableError> {
    let dir = path.parent().expect("a part lives in its table's folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().expect("a part has a file name"));
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut writer = ArrowWriter::try_new(file, T::schema(), Some(props)).map_err(parquet(&tmp))?;
    writer.write(&T::to_batch(rows)).map_err(parquet(&tmp))?;
    writer.into_inner().map_err(parquet(&tmp))?.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Every record batch of one part file.
pub fn read_part_file(path: &Path) -> Result<Vec<RecordBatch>, TableError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.build()).map_err(parquet(path))?;
    reader.map(|batch| batch.map_err(|e| TableError::Parquet { path: path.into(), source: e.into() })).collect()
}

/// Reads the named parts of a table (say, the shards one process wrote), in the order given; a
/// missing part is an error, since every finished shard has one.
pub fn read_parts(out_dir: &Path, table: &str, parts: &[String]) -> Result<Vec<RecordBatch>, TableError> {
    let mut out = Vec::new();
    for part in parts {
        out.extend(read_part_file(&part_path(out_dir, table, part))?);
    }
    Ok(out)
}

/// Every part of a table, in part-name order (none when the table's folder does not exist).
pub fn read_table(out_dir: &Path, table: &str) -> Result<Vec<RecordBatch>, TableError> {
    let dir = out_dir.join(table);
    let mut parts: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(read) => read
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    parts.sort();
    let mut out = Vec::new();
    for part in parts {
        out.extend(read_part_file(&part)?);
    }
    Ok(out)
}

fn rows_of<T: Table>(path: &Path, batches: Vec<RecordBatch>) -> Result<Vec<T>, TableError> {
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(T::from_batch(batch).map_err(|e| e.at(path))?);
    }
    Ok(rows)
}

/// One part file's rows, or `None` when the part does not exist.
pub fn read_part<T: Table>(out_dir: &Path, part: &str) -> Result<Option<Vec<T>>, TableError> {
    let path = part_path(out_dir, T::NAME, part);
    if !path.exists() {
        return Ok(None);
    }
    let batches = read_part_file(&path)?;
    rows_of(&path, batches).map(Some)
}

/// Every row of a table, all parts.
pub fn read_rows<T: Table>(out_dir: &Path) -> Result<Vec<T>, TableError> {
    let dir = out_dir.join(T::NAME);
    rows_of(&dir, read_table(out_dir, T::NAME)?)
}

/// Columns that measure time, and so differ between any two runs of the same job.
pub const TIMING_COLUMNS: [&str; 2] = ["infer_ms", "cam_ms"];

/// A table's rows as sorted text lines, timing columns left out: two runs with equal results give
/// equal lines, whatever their part files and row order.
pub fn canonical_rows(out_dir: &Path, table: &str) -> Result<Vec<String>, TableError> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let dir = out_dir.join(table);
    let mut rows = Vec::new();
    for batch in read_table(out_dir, table)? {
        let schema = batch.schema();
        let mut columns = Vec::new();
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            if !TIMING_COLUMNS.contains(&field.name().as_str()) {
                let formatter = ArrayFormatter::try_new(col.as_ref(), &options)
                    .map_err(|e| TableError::Schema { path: dir.clone(), column: field.name().clone(), message: e.to_string() })?;
                columns.push((field.name().clone(), formatter));
            }
        }
        rows.extend((0..batch.num_rows()).map(|i| {
            columns.iter().map(|(name, f)| format!("{name}={}", f.value(i))).collect::<Vec<_>>().join(" | ")
        }));
    }
    rows.sort();
    Ok(rows)
}
