//! Where images come from: ImageNet validation in the Kaggle or the original ILSVRC layout, or
//! WebDataset tar shards (local or behind an `http(s)://`, `s3://`, `gs://` URL), listed once,
//! sorted by id and cut into shards, the unit of work and of output part files.
//!
//! No libtorch and no timely here: a shard opens as a plain iterator of samples or error rows,
//! testable alone.

mod fetch;
mod ilsvrc;
mod index;
mod kaggle;
mod location;
mod read;
mod synsets;
mod voc;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fetch::{Fetcher, PREFETCH_BYTES};
pub use index::{
    is_plain_name, sample_digest, ListedError, SampleMeta, ShardIndex, ShardListing, INDEX_FILE, INDEX_FORMAT,
    INDEX_VERSION,
};
pub use location::{is_url, Location};
pub use read::ShardReader;
pub use write::{write_shards, Dimensions};

use types::{BoxXyxy, ErrorRow, Sample, Stage};
use serde::{Deserialize, Serialize};

/// The 1000 ImageNet-1k wnids in sorted order: class index = position (SPEC §1). Shipped so the
/// original ILSVRC layout, which has no synset file of its own, labels exactly like Kaggle's.
const IMAGENET_WNIDS: &str = include_str!("imagenet_wnids.txt");

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{location}: {message}")]
    Index { location: String, message: String },
    #[error("shard {shard}: {message}")]
    Shard { shard: String, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Detect from the folder contents.
    Auto,
    /// Kaggle "ImageNet Object Localization Challenge": `LOC_val_solution.csv` + `ILSVRC/Data/CLS-LOC/val`.
    Kaggle,
    /// Original ILSVRC2012: a folder of val JPEGs, `ILSVRC2012_bbox_val_v3` XMLs, a labels file.
    Ilsvrc,
    /// WebDataset tar shards with an `index.json` (written by [`write_shards`]); the only layout
    /// readable from a URL.
    Shards,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A folder, or a URL (`http(s)://`, `s3://bucket/prefix`, `gs://bucket/prefix`) of the folder
    /// holding `index.json`; see [`DataConfig::location`].
    pub path: PathBuf,
    #[serde(default = "default_layout")]
    pub layout: Layout,
    /// Images per shard when a folder layout is split into shards (shards are the unit of work).
    /// Tar shards keep the split they were written with.
    #[serde(default = "default_shard_size")]
    pub shard_size: usize,
    /// Only the first `limit` images (sorted by id); for quick runs.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Decode refuses images above this many pixels instead of allocating them.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
}

impl DataConfig {
    /// A configuration with every default but the location (and an optional limit).
    pub fn at(path: PathBuf, limit: Option<usize>) -> DataConfig {
        DataConfig {
            path,
            layout: default_layout(),
            shard_size: default_shard_size(),
            limit,
            max_pixels: default_max_pixels(),
        }
    }

    /// `path` as a local folder or a URL; URLs are never resolved against the job file's folder.
    pub fn location(&self) -> Result<Location, DataError> {
        Location::parse(&self.path)
    }
}

fn default_layout() -> Layout {
    Layout::Auto
}
fn default_shard_size() -> usize {
    100
}
fn default_max_pixels() -> u64 {
    // Pillow's own limit: every ImageNet val image fits; a decompression bomb does not.
    types::DEFAULT_MAX_PIXELS
}

/// Class indices by wnid.
#[derive(Clone, Debug)]
pub struct Synsets {
    index: HashMap<String, i32>,
}

impl Synsets {
    pub fn imagenet() -> Synsets {
        Synsets::from_wnids(Synsets::shipped())
    }

    /// Reads `LOC_synset_mapping.txt` (`wnid name...` per line) and sorts it, as torchvision does.
    /// It must list exactly the shipped ImageNet-1k wnids: one missing line would shift every
    /// class index after it, silently.
    pub fn from_mapping_file(path: &Path) -> Result<Synsets, DataError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.into(), source })?;
        let shipped: Vec<&str> = Synsets::shipped().collect();
        let mut wnids = synsets::check_mapping(&text, &shipped).map_err(|message| DataError::Layout { path: path.into(), message })?;
        wnids.sort_unstable();
        Ok(Synsets::from_wnids(wnids.into_iter()))
    }

    fn shipped() -> impl Iterator<Item = &'static str> {
        IMAGENET_WNIDS.lines().map(str::trim).filter(|l| !l.is_empty())
    }

    fn from_wnids<'a>(wnids: impl Iterator<Item = &'a str>) -> Synsets {
        Synsets { index: wnids.enumerate().map(|(i, w)| (w.to_string(), i as i32)).collect() }
    }

    pub fn class_of(&self, wnid: &str) -> Option<i32> {
        self.index.get(wnid).copied()
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// One image as listed: where its bytes are and what the annotations say about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub image_id: String,
    pub path: PathBuf,
    /// `Err` carries why the label is unusable (missing, unknown wnid, unparsable annotation);
    /// such an image becomes an `errors` row, never a silent drop.
    pub label: Result<i32, String>,
    pub boxes: Vec<BoxXyxy>,
}

/// A fixed group of images, the unit of distribution: worker `w` reads the shards with
/// `index % workers == w`. Its name is stable across runs and worker layouts. Read it with
/// [`Shard::open`]; [`Shard::count`] says how many items that yields.
#[derive(Clone, Debug)]
pub struct Shard {
    pub index: usize,
    pub name: String,
    pub source: ShardSource,
}

#[derive(Clone, Debug)]
pub enum ShardSource {
    /// Folder layouts: one image file per entry.
    Files(Vec<Entry>),
    /// One WebDataset tar listed in an `index.json`.
    Tar(Arc<TarShard>),
}

/// A tar shard as its index describes it (keys cut to `limit` if one is set).
#[derive(Clone, Debug, PartialEq)]
pub struct TarShard {
    /// The tar file, on disk or behind a URL.
    pub location: Location,
    /// Every key in order; a reader yields one item per key.
    pub keys: Vec<String>,
    pub sample_sha256: BTreeMap<String, String>,
    pub errors: BTreeMap<String, ListedError>,
    /// Size of the tar file, to report a truncated download as such.
    pub bytes: u64,
    pub sha256: String,
}

/// The listed dataset, cut into shards.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub location: Location,
    pub layout: Layout,
    pub shards: Vec<Shard>,
}

impl Dataset {
    /// Lists the dataset at `cfg.path`. For a URL this fetches `index.json` (with a short-lived
    /// [`Fetcher`]); tar shards are only opened when read.
    pub fn open(cfg: &DataConfig) -> Result<Dataset, DataError> {
        let root = match cfg.location()? {
            Location::Url(url) => return open_shards(cfg, &Location::Url(url)),
            Location::Local(root) => root,
        };
        if !root.is_dir() {
            return Err(DataError::Layout { path: root, message: "data folder does not exist".into() });
        }
        let layout = match cfg.layout {
            Layout::Auto => detect_layout(&root)?,
            other => other,
        };
        let mut entries = match layout {
            Layout::Kaggle => kaggle::list(&root)?,
            Layout::Ilsvrc => ilsvrc::list(&root)?,
            Layout::Shards => return open_shards(cfg, &Location::Local(root)),
            Layout::Auto => unreachable!("detect_layout returns a concrete layout"),
        };
        entries.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        if let Some(limit) = cfg.limit {
            entries.truncate(limit);
        }
        if entries.is_empty() {
            return Err(DataError::Layout { path: root, message: "no images found".into() });
        }
        let shards = entries
            .chunks(cfg.shard_size)
            .enumerate()
            .map(|(index, chunk)| Shard {
                index,
                name: format!("val-{index:05}"),
                source: ShardSource::Files(chunk.to_vec()),
            })
            .collect();
        Ok(Dataset { location: Location::Local(root), layout, shards })
    }

    /// Images over all shards, i.e. items their readers yield.
    pub fn len(&self) -> usize {
        self.shards.iter().map(Shard::count).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads and checks `index.json` in `dir`, then lists its shards, cut to `cfg.limit` keys.
fn open_shards(cfg: &DataConfig, dir: &Location) -> Result<Dataset, DataError> {
    if !matches!(cfg.layout, Layout::Auto | Layout::Shards) {
        return Err(DataError::Layout {
            path: cfg.path.clone(),
            message: format!("layout {:?} cannot be read from a URL; only `shards` can", cfg.layout),
        });
    }
    let index_at = dir.join(INDEX_FILE);
    let text = match &index_at {
        Location::Local(path) => std::fs::read(path).map_err(|source| DataError::Io { path: path.clone(), source })?,
        Location::Url(url) => Fetcher::new()?.get_all(url)?.to_vec(),
    };
    let bad_index = |message: String| DataError::Index { location: index_at.to_string(), message };
    let index: ShardIndex = serde_json::from_slice(&text).map_err(|e| bad_index(e.to_string()))?;
    index.validate().map_err(bad_index)?;
    let mut left = cfg.limit.unwrap_or(usize::MAX);
    let mut shards = Vec::new();
    for (position, listing) in index.shards.into_iter().enumerate() {
        if left == 0 {
            break;
        }
        let mut keys = listing.keys;
        keys.truncate(left);
        left -= keys.len();
        let tar = TarShard {
            location: dir.join(&listing.file),
            keys,
            sample_sha256: listing.sample_sha256,
            errors: listing.errors,
            bytes: listing.bytes,
            sha256: listing.sha256,
        };
        shards.push(Shard { index: position, name: listing.name, source: ShardSource::Tar(Arc::new(tar)) });
    }
    shards.retain(|s| s.count() > 0);
    if shards.is_empty() {
        return Err(bad_index("no images listed".into()));
    }
    Ok(Dataset { location: dir.clone(), layout: Layout::Shards, shards })
}

fn detect_layout(root: &Path) -> Result<Layout, DataError> {
    if root.join(INDEX_FILE).is_file() {
        Ok(Layout::Shards)
    } else if kaggle::looks_like(root) {
        Ok(Layout::Kaggle)
    } else if ilsvrc::looks_like(root) {
        Ok(Layout::Ilsvrc)
    } else {
        Err(DataError::Layout {
            path: root.into(),
            message: "neither shards (index.json), the Kaggle layout (LOC_val_solution.csv or \
                      ILSVRC/Data/CLS-LOC/val) nor the ILSVRC layout (ILSVRC2012_img_val/ with \
                      ILSVRC2012_bbox_val_v3/) was found"
                .into(),
        })
    }
}

/// Reads one entry's bytes into a [`Sample`]; an unreadable file or an unusable label becomes an
/// error row for this image only.
pub fn read_sample(entry: &Entry, shard: &str) -> Result<Sample, ErrorRow> {
    let label = entry.label.clone().map_err(|message| ErrorRow::new(&entry.image_id, shard, Stage::Label, message))?;
    let bytes = std::fs::read(&entry.path)
        .map_err(|e| ErrorRow::new(&entry.image_id, shard, Stage::Read, format!("{}: {e}", entry.path.display())))?;
    Ok(Sample { image_id: entry.image_id.clone(), shard: shard.to_string(), label, boxes: entry.boxes.clone(), bytes })
}

/// `ILSVRC2012_val_00000001.JPEG` → `ILSVRC2012_val_00000001`, for image files only.
fn image_id_of(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if !matches!(ext.as_str(), "jpeg" | "jpg" | "png") {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

/// Image files of a folder, by id.
fn list_images(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|source| DataError::Io { path: dir.into(), source })?;
    let mut out = Vec::new();
    for item in read {
        let item = item.map_err(|source| DataError::Io { path: dir.into(), source })?;
        let path = item.path();
        if let Some(id) = image_id_of(&path) {
            out.push((id, path));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_wnids_are_imagenet_sorted() {
        let s = Synsets::imagenet();
        assert_eq!(s.len(), 1000);
        // First and last ImageNet-1k classes: tench and toilet tissue.
        assert_eq!(s.class_of("n01440764"), Some(0));
        assert_eq!(s.class_of("n15075141"), Some(999));
        assert_eq!(s.class_of("n00000000"), None);
    }
}

/// Turns a parsed annotation into an entry, resolving the wnid to a class index.
fn entry(
    image_id: String,
    path: PathBuf,
    annotation: Result<(String, Vec<BoxXyxy>), String>,
    synsets: &Synsets,
) -> Entry {
    match annotation {
        Ok((wnid, boxes)) => match synsets.class_of(&wnid) {
            Some(class) => Entry { image_id, path, label: Ok(class), boxes },
            None => Entry { image_id, path, label: Err(format!("unknown wnid {wnid}")), boxes },
        },
        Err(message) => Entry { image_id, path, label: Err(message), boxes: Vec::new() },
    }
}
