//! Packing a dataset into WebDataset tar shards plus `index.json`.
//!
//! Output is a pure function of the input: tar headers carry no time, owner or mode of the
//! source files, and the index has no timestamps, so re-packing gives byte-identical files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use types::{ErrorRow, Sample};
use sha2::{Digest, Sha256};

use crate::fetch::Fetcher;
use crate::index::{
    is_plain_name, sample_digest, ListedError, SampleMeta, ShardIndex, ShardListing, CLASS_EXT, IMAGE_EXT,
    INDEX_FILE, INDEX_FORMAT, INDEX_VERSION, META_EXT,
};
use crate::{DataError, Dataset};

/// Reads an encoded image's width and height from its header, or `None` when it cannot. The
/// decoder's own (`operators::decode::image_dimensions`) is what `qcam shard` passes, so the sizes
/// recorded are those the run will decode.
pub type Dimensions = fn(&[u8]) -> Option<(u32, u32)>;

/// Packs every image of `dataset`, in its order, into `shard-NNNNN.tar` files of `shard_size`
/// keys in `out_dir`, then writes `index.json`. Images the source cannot provide (unusable label,
/// unreadable file) are not packed but listed under their shard's `errors`. Each file is written
/// under a temporary name and renamed, the index last, so a folder with an index is complete.
pub fn write_shards(dataset: &Dataset, out_dir: &Path, shard_size: usize, dims: Dimensions) -> Result<ShardIndex, DataError> {
    if shard_size == 0 {
        return Err(DataError::Layout { path: out_dir.into(), message: "shard size must be at least 1".into() });
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Io { path: path.clone(), source }
    };
    std::fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
    let fetch = Fetcher::new()?;
    let mut listings = Vec::new();
    let mut current: Option<ShardWriter> = None;
    let packed = pack_all(dataset, out_dir, shard_size, dims, &fetch, &mut listings, &mut current);
    if let Err(e) = packed {
        // Leave no half-written tar behind; finished shards are whole and harmless without an index.
        if let Some(writer) = current {
            let tmp = writer.tmp.clone();
            drop(writer);
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    let index = ShardIndex {
        format: INDEX_FORMAT.into(),
        version: INDEX_VERSION,
        source_layout: dataset.layout,
        total: listings.iter().map(|s| s.count).sum(),
        shards: listings,
    };
    let mut json = serde_json::to_vec_pretty(&index).expect("the index serializes");
    json.push(b'\n');
    let path = out_dir.join(INDEX_FILE);
    let tmp = tmp_path(&path);
    std::fs::write(&tmp, &json).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(index)
}

/// Streams every item of `dataset` into tars, finishing each at `shard_size` keys and the last
/// one at the end; `current` is the tar being written when this fails.
fn pack_all(
    dataset: &Dataset,
    out_dir: &Path,
    shard_size: usize,
    dims: Dimensions,
    fetch: &Fetcher,
    listings: &mut Vec<ShardListing>,
    current: &mut Option<ShardWriter>,
) -> Result<(), DataError> {
    for shard in &dataset.shards {
        for item in shard.open(fetch) {
            let image_id = crate::read::item_id(&item);
            // Checked before any file is created for it: ids become member names.
            if !is_plain_name(image_id) {
                return Err(DataError::Shard {
                    shard: shard.name.clone(),
                    message: format!(
                        "image id `{}` is not a plain name ([A-Za-z0-9_.-]) and cannot be a key",
                        image_id.escape_debug()
                    ),
                });
            }
            if current.as_ref().is_some_and(|w| w.listing.count == shard_size) {
                listings.push(current.take().expect("checked just above").finish()?);
            }
            let writer = match current {
                Some(writer) => writer,
                None => current.insert(ShardWriter::create(out_dir, listings.len())?),
            };
            match item {
                Ok(sample) => writer.append(&sample, dims)?,
                Err(row) => writer.list_error(&row),
            }
        }
    }
    if let Some(writer) = current.take() {
        listings.push(writer.finish()?);
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// One tar being written, with its listing filled as samples go in.
struct ShardWriter {
    tar: tar::Builder<HashingWriter<BufWriter<File>>>,
    path: PathBuf,
    tmp: PathBuf,
    listing: ShardListing,
}

impl ShardWriter {
    fn create(out_dir: &Path, index: usize) -> Result<ShardWriter, DataError> {
        let name = format!("shard-{index:05}");
        let file = format!("{name}.tar");
        let path = out_dir.join(&file);
        let tmp = tmp_path(&path);
        let handle = File::create(&tmp).map_err(|source| DataError::Io { path: tmp.clone(), source })?;
        let sink = HashingWriter { inner: BufWriter::new(handle), hasher: Sha256::new(), bytes: 0 };
        let listing = ShardListing {
            name,
            file,
            count: 0,
            bytes: 0,
            sha256: String::new(),
            keys: Vec::new(),
            sample_sha256: BTreeMap::new(),
            errors: BTreeMap::new(),
        };
        Ok(ShardWriter { tar: tar::Builder::new(sink), path, tmp, listing })
    }

    fn append(&mut self, sample: &Sample, dims: Dimensions) -> Result<(), DataError> {
        let key = sample.image_id.clone();
        // An unreadable header is decode's to report in the run; the shard keeps the bytes as they are.
        let (width, height) = dims(&sample.bytes).unzip();
        let meta = SampleMeta { boxes: sample.boxes.iter().map(|b| b.to_array()).collect(), width, height };
        let meta = serde_json::to_vec(&meta).expect("sample meta serializes");
        let class = sample.label.to_string().into_bytes();
        for (ext, data) in [(IMAGE_EXT, &sample.bytes[..]), (CLASS_EXT, &class[..]), (META_EXT, &meta[..])] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            self.tar.append_data(&mut header, format!("{key}.{ext}"), data).map_err(|source| self.io_error(source))?;
        }
        self.listing.sample_sha256.insert(key.clone(), sample_digest(&sample.bytes, &class, &meta));
        self.push_key(key);
        Ok(())
    }

    fn list_error(&mut self, row: &ErrorRow) {
        let listed = ListedError { stage: row.stage.as_str().into(), message: row.message.clone() };
        self.listing.errors.insert(row.image_id.clone(), listed);
        self.push_key(row.image_id.clone());
    }

    fn push_key(&mut self, key: String) {
        self.listing.keys.push(key);
        self.listing.count += 1;
    }

    fn io_error(&self, source: io::Error) -> DataError {
        DataError::Io { path: self.tmp.clone(), source }
    }

    fn finish(mut self) -> Result<ShardListing, DataError> {
        self.tar.finish().map_err(|source| DataError::Io { path: self.tmp.clone(), source })?;
        let sink = self.tar.into_inner().map_err(|source| DataError::Io { path: self.tmp.clone(), source })?;
        let HashingWriter { inner, hasher, bytes } = sink;
        let file = inner.into_inner().map_err(|e| DataError::Io { path: self.tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(|source| DataError::Io { path: self.tmp.clone(), source })?;
        std::fs::rename(&self.tmp, &self.path).map_err(|source| DataError::Io { path: self.path.clone(), source })?;
        self.listing.bytes = bytes;
        self.listing.sha256 = format!("{:x}", hasher.finalize());
        Ok(self.listing)
    }
}

/// Hashes and counts what goes to the file, so the index needs no second read.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
