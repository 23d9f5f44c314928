//! Where images come from: ImageNet validation in the Kaggle or the original ILSVRC layout, listed
//! once, sorted by id and cut into shards, the unit of work and of output part files.

mod ilsvrc;
mod kaggle;
mod voc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use operators::{BoxXyxy, Sample};

use crate::job::{DataConfig, Layout};
use crate::sink::{ErrorRow, Stage};

/// The 1000 ImageNet-1k wnids in sorted order: class index = position (SPEC §1). Shipped so the
/// original ILSVRC layout, which has no synset file of its own, labels exactly like Kaggle's.
const IMAGENET_WNIDS: &str = include_str!("imagenet_wnids.txt");

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Class indices by wnid.
#[derive(Clone, Debug)]
pub struct Synsets {
    index: HashMap<String, i32>,
}

impl Synsets {
    pub fn imagenet() -> Synsets {
        Synsets::from_wnids(IMAGENET_WNIDS.lines().map(str::trim).filter(|l| !l.is_empty()))
    }

    /// Reads `LOC_synset_mapping.txt` (`wnid name...` per line) and sorts it, as torchvision does.
    pub fn from_mapping_file(path: &Path) -> Result<Synsets, DataError> {
        let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.into(), source })?;
        let mut wnids: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
        wnids.sort_unstable();
        Ok(Synsets::from_wnids(wnids.into_iter()))
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

/// A fixed group of entries; its name is stable across runs and worker layouts.
#[derive(Clone, Debug)]
pub struct Shard {
    pub index: usize,
    pub name: String,
    pub entries: Vec<Entry>,
}

/// The listed dataset, cut into shards.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub shards: Vec<Shard>,
}

impl Dataset {
    pub fn open(cfg: &DataConfig) -> Result<Dataset, DataError> {
        let root = cfg.path.clone();
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
            .map(|(index, chunk)| Shard { index, name: format!("val-{index:05}"), entries: chunk.to_vec() })
            .collect();
        Ok(Dataset { root, layout, shards })
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn detect_layout(root: &Path) -> Result<Layout, DataError> {
    if kaggle::looks_like(root) {
        Ok(Layout::Kaggle)
    } else if ilsvrc::looks_like(root) {
        Ok(Layout::Ilsvrc)
    } else {
        Err(DataError::Layout {
            path: root.into(),
            message: "neither the Kaggle layout (LOC_val_solution.csv or ILSVRC/Data/CLS-LOC/val) nor the \
                      ILSVRC layout (ILSVRC2012_img_val/ with ILSVRC2012_bbox_val_v3/) was found"
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
