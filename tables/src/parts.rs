//! Part files: `<table>/part-<part>.parquet` in a run folder ([`RunDir`]), one per shard or per pair.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{RunDir, Table, TableError};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io { path: path.into(), source }
}

fn parquet(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> TableError + '_ {
    move |source| TableError::Parquet { path: path.into(), source }
}

/// Entry of a table's part in a run folder (one per shard or pair, named after it).
pub fn part_key(table: &str, part: &str) -> String {
    format!("{table}/part-{part}.parquet")
}

/// Where [`write_part`] puts a table's part in a local run folder.
pub fn part_path(out_dir: &Path, table: &str, part: &str) -> PathBuf {
    out_dir.join(part_key(table, part))
}

/// Writes `rows` as `<table>/part-<part>.parquet` in `dir` (a local folder or an object store,
/// [`RunDir`]), whole or not at all, so that a reader (or a resumed run) never sees a half-written
/// part. An empty part still gets a file, so a finished unit is visible as such. Returns where.
pub fn write_part<T: Table>(dir: impl Into<RunDir>, part: &str, rows: &[T]) -> Result<PathBuf, TableError> {
    let dir = dir.into();
    let key = part_key(T::NAME, part);
    write_part_at(&dir, &key, rows)?;
    Ok(dir.at(&key))
}

fn encode<T: Table, W: std::io::Write + Send>(sink: W, rows: &[T], at: &Path) -> Result<W, TableError> {
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let mut writer = ArrowWriter::try_new(sink, T::schema(), Some(props)).map_err(parquet(at))?;
    writer.write(&T::to_batch(rows)).map_err(parquet(at))?;
    writer.into_inner().map_err(parquet(at))
}

/// Writes `rows` as the Parquet entry `rel` of `dir`. Locally through `.<name>.tmp` in the same
/// folder, synced, then renamed; on a store encoded in memory and put as one object.
pub fn write_part_at<T: Table>(dir: &RunDir, rel: &str, rows: &[T]) -> Result<(), TableError> {
    let path = dir.at(rel);
    if !dir.is_store() {
        return write_local_part(&path, rows);
    }
    let bytes = encode(Vec::new(), rows, &path)?;
    dir.write(rel, bytes)
}

fn write_local_part<T: Table>(path: &Path, rows: &[T]) -> Result<(), TableError> {
    let dir = path.parent().expect("a part lives in its table's folder");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().expect("a part has a file name"));
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let file = File::create(&tmp).map_err(io(&tmp))?;
    encode(file, rows, &tmp)?.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn batches_of<R: ChunkReader + 'static>(source: R, path: &Path) -> Result<Vec<RecordBatch>, TableError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(source).and_then(|b| b.build()).map_err(parquet(path))?;
    reader.map(|batch| batch.map_err(|e| TableError::Parquet { path: path.into(), source: e.into() })).collect()
}

/// Every record batch of one local part file.
pub fn read_part_file(path: &Path) -> Result<Vec<RecordBatch>, TableError> {
    batches_of(File::open(path).map_err(io(path))?, path)
}

/// Every record batch of the part entry `rel`, or `None` when there is none.
fn read_entry(dir: &RunDir, rel: &str) -> Result<Option<Vec<RecordBatch>>, TableError> {
    match dir {
        RunDir::Local(_) => {
            let path = dir.at(rel);
            match File::open(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                file => batches_of(file.map_err(io(&path))?, &path).map(Some),
            }
        }
        RunDir::Store(_) => dir.read(rel)?.map(|bytes| batches_of(bytes::Bytes::from(bytes), &dir.at(rel))).transpose(),
    }
}

/// Rows the part `<table>/part-<part>.parquet` says it holds (its footer), or why it cannot be read.
pub fn part_rows(dir: &RunDir, table: &str, part: &str) -> Result<usize, TableError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let rel = part_key(table, part);
    let path = dir.at(&rel);
    let missing = || TableError::Io { path: path.clone(), source: std::io::ErrorKind::NotFound.into() };
    let rows = |r: &dyn FileReader| r.metadata().file_metadata().num_rows() as usize;
    match dir {
        RunDir::Local(_) => {
            let file = File::open(&path).map_err(io(&path))?;
            Ok(rows(&SerializedFileReader::new(file).map_err(parquet(&path))?))
        }
        RunDir::Store(_) => {
            let bytes = bytes::Bytes::from(dir.read(&rel)?.ok_or_else(missing)?);
            Ok(rows(&SerializedFileReader::new(bytes).map_err(parquet(&path))?))
        }
    }
}

/// Reads the named parts of a table (say, the shards one process wrote), in the order given; a
/// missing part is an error, since every finished shard has one.
pub fn read_parts(dir: impl Into<RunDir>, table: &str, parts: &[String]) -> Result<Vec<RecordBatch>, TableError> {
    let dir = dir.into();
    let mut out = Vec::new();
    for part in parts {
        let rel = part_key(table, part);
        let missing = || TableError::Io { path: dir.at(&rel), source: std::io::ErrorKind::NotFound.into() };
        out.extend(read_entry(&dir, &rel)?.ok_or_else(missing)?);
    }
    Ok(out)
}

/// Every part of a table, in part-name order (none when the table's folder does not exist).
pub fn read_table(dir: impl Into<RunDir>, table: &str) -> Result<Vec<RecordBatch>, TableError> {
    let dir = dir.into();
    let mut out = Vec::new();
    for name in dir.list(table)?.into_iter().filter(|n| n.ends_with(".parquet")) {
        // A part removed between listing and reading (a commit in progress) is skipped.
        out.extend(read_entry(&dir, &format!("{table}/{name}"))?.unwrap_or_default());
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

/// One part's rows, or `None` when the part does not exist.
pub fn read_part<T: Table>(dir: impl Into<RunDir>, part: &str) -> Result<Option<Vec<T>>, TableError> {
    let dir = dir.into();
    let rel = part_key(T::NAME, part);
    let Some(batches) = read_entry(&dir, &rel)? else { return Ok(None) };
    rows_of(&dir.at(&rel), batches).map(Some)
}

/// Every row of a table, all parts.
pub fn read_rows<T: Table>(dir: impl Into<RunDir>) -> Result<Vec<T>, TableError> {
    let dir = dir.into();
    rows_of(&dir.at(T::NAME), read_table(&dir, T::NAME)?)
}

/// Columns that measure time, and so differ between any two runs of the same job.
pub const TIMING_COLUMNS: [&str; 2] = ["infer_ms", "cam_ms"];

/// A table's rows as sorted text lines, timing columns left out: two runs with equal results give
/// equal lines, whatever their part files and row order.
pub fn canonical_rows(dir: impl Into<RunDir>, table: &str) -> Result<Vec<String>, TableError> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default();
    let dir = dir.into();
    let at = dir.at(table);
    let mut rows = Vec::new();
    for batch in read_table(&dir, table)? {
        let schema = batch.schema();
        let mut columns = Vec::new();
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            if !TIMING_COLUMNS.contains(&field.name().as_str()) {
                let formatter = ArrayFormatter::try_new(col.as_ref(), &options)
                    .map_err(|e| TableError::Schema { path: at.clone(), column: field.name().clone(), message: e.to_string() })?;
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
