//! Where images come from: ImageNet validation in the Kaggle or the original ILSVRC layout, or
//! WebDataset tar shards (local or behind an `http(s)://`, `s3://`, `gs://` URL), listed once,
//! sorted by id and cut into shards, the unit of work and of output part files. The same object-store
//! clients also hold run folders in a bucket ([`StoreFolder`]).
//!
//! No libtorch and no timely here: a shard opens as a plain iterator of samples or error rows,
//! testable alone.

mod fetch;
mod folder;
mod ilsvrc;
mod index;
mod kaggle;
mod location;
mod read;
mod store;
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
pub use read::{item_id, ShardReader};
pub use store::{StoreFolder, WRITABLE_SCHEMES};
pub use write::{write_shards, Dimensions};

use types::{BoxXyxy, ErrorRow, Sample, Stage};
pub use types::{DataConfig, Layout};

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
    /// Two files of the image folder give one image id (`X.JPEG` and `X.jpg`): each would be a
    /// row for the same id, one scored with the other's pixels. Which is the image is not ours to guess.
    #[error("{first} and {second}: two files for image id `{image_id}`; keep one")]
    DuplicateImage { image_id: String, first: PathBuf, second: PathBuf },
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

/// One input as listed: where its bytes are and what the annotations say about it. Every item
/// of the image folder and every id the labels list is one entry, and each entry reads as one
/// item, a sample or an error row.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// An image's file stem, or the whole name of a folder item that is not an image; unique
    /// within a listing.
    pub image_id: String,
    /// The image file. `Err` carries why there is none to read (an id listed without an image
    /// file, a file or folder that is not an image); such an entry becomes a `read` error row.
    pub file: Result<PathBuf, String>,
    /// `Err` carries why the label is unusable (missing, unknown wnid, unparsable annotation);
    /// such an image becomes an `errors` row, never a silent drop.
    pub label: Result<i32, String>,
    pub boxes: Vec<BoxXyxy>,
}

impl Entry {
    /// An input with no image to read: it reads as one `read` error row saying `why`. Its
    /// label repeats `why`, as there is nothing to label.
    pub(crate) fn without_image(image_id: String, why: String) -> Entry {
        Entry { image_id, file: Err(why.clone()), label: Err(why), boxes: Vec::new() }
    }
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
    /// Whether `keys` is the whole shard; `false` when `limit` cut it, so that members past the
    /// last key are expected rather than a sign that the tar does not match its index.
    pub complete: bool,
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
        let root = match Location::parse(&cfg.path)? {
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
        // Ids are unique (the listing stops at two files for one id), so this order is total.
        // Entries without an image sort by id among the others and count against `limit`, and
        // shards are chunks of this order: a folder run, and a run over the shards packed from
        // it, list the same ids at the same places, errors included.
        entries.sort_by(|a, b| a.image_id.cmp(&b.image_id));
        if entries.iter().all(|e| e.file.is_err()) {
            return Err(DataError::Layout { path: root, message: no_images(&entries) });
        }
        if let Some(limit) = cfg.limit {
            entries.truncate(limit);
        }
        if entries.is_empty() {
            return Err(DataError::Layout { path: root, message: "no images within data.limit".into() });
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
        let complete = keys.len() <= left;
        keys.truncate(left);
        left -= keys.len();
        let tar = TarShard {
            location: dir.join(&listing.file),
            keys,
            complete,
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

/// Why a listing with no image file is refused, with the first entry as a hint of what is there.
fn no_images(entries: &[Entry]) -> String {
    match entries.first() {
        None => "no images found".into(),
        Some(first) => format!(
            "no image files found (entries without one: {}; the first: {})",
            entries.len(),
            first.file.as_ref().err().map_or("", String::as_str)
        ),
    }
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

/// A wnid and its boxes, or why the annotation is unusable.
type Annotation = Result<(String, Vec<BoxXyxy>), String>;

/// Reads one entry's bytes into a [`Sample`]; no image file, an unreadable file or an unusable
/// label becomes an error row for this entry only. No file is checked first: a `notes.txt` is
/// reported as not an image, not as unlabelled.
pub fn read_sample(entry: &Entry, shard: &str) -> Result<Sample, ErrorRow> {
    let error = |stage, message| ErrorRow::new(&entry.image_id, shard, stage, message);
    let path = entry.file.as_ref().map_err(|why| error(Stage::Read, why.clone()))?;
    let label = entry.label.clone().map_err(|message| error(Stage::Label, message))?;
    let bytes = std::fs::read(path).map_err(|e| error(Stage::Read, format!("{}: {e}", path.display())))?;
    Ok(Sample { image_id: entry.image_id.clone(), shard: shard.to_string(), label, boxes: entry.boxes.clone(), bytes })
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
fn entry(image_id: String, path: PathBuf, annotation: Annotation, synsets: &Synsets) -> Entry {
    let file = Ok(path);
    match annotation {
        Ok((wnid, boxes)) => match synsets.class_of(&wnid) {
            Some(class) => Entry { image_id, file, label: Ok(class), boxes },
            None => Entry { image_id, file, label: Err(format!("unknown wnid {wnid}")), boxes },
        },
        Err(message) => Entry { image_id, file, label: Err(message), boxes: Vec::new() },
    }
}
