//! The image folder of the folder layouts, listed so that no input vanishes without a trace:
//! every item of the folder becomes an entry (an image by its stem, anything else by its full
//! name, reading as one `read` error row), and so does every id the labels list with no image
//! file. Two files for one id stop the listing, naming both.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::{Annotation, DataError, Entry, Synsets};

/// Extensions of image files, compared without case.
const IMAGE_EXTS: [&str; 3] = ["jpeg", "jpg", "png"];

/// Ids that the label sources list, each with the file that lists it (the preferred source's,
/// if several do).
pub(crate) type Listed = BTreeMap<String, PathBuf>;

/// An item of the image folder: its id, and the image file or why it is not one.
type Item = (String, Result<PathBuf, String>);

/// Every item of `dir` and every id in `listed` without a file, as entries; `annotate` gives
/// an image's wnid and boxes by id.
pub(crate) fn entries(
    dir: &Path,
    listed: &Listed,
    mut annotate: impl FnMut(&str) -> Annotation,
    synsets: &Synsets,
) -> Result<Vec<Entry>, DataError> {
    let items = items(dir)?;
    let mut out: Vec<Entry> = Vec::with_capacity(items.len());
    let mut present = HashSet::with_capacity(items.len());
    for (image_id, file) in items {
        present.insert(image_id.clone());
        out.push(match file {
            Ok(path) => {
                let annotation = annotate(&image_id);
                crate::entry(image_id, path, annotation, synsets)
            }
            Err(why) => Entry::without_image(image_id, why),
        });
    }
    for (image_id, listing) in listed.iter().filter(|(id, _)| !present.contains(*id)) {
        let why = format!(
            "no image file: `{image_id}` is listed in {} but {} has no {image_id}.JPEG, .jpg or .png",
            listing.display(),
            dir.display()
        );
        out.push(Entry::without_image(image_id.clone(), why));
    }
    Ok(out)
}

/// Ids of the `*.xml` annotation files in `dir` (none if there is no such folder). Other files
/// there are not inputs and are left alone.
pub(crate) fn xml_ids(dir: &Path) -> Result<Listed, DataError> {
    if !dir.is_dir() {
        return Ok(Listed::new());
    }
    Ok(paths(dir)?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")) && p.is_file())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect())
}

/// Each item of `dir` as (id, the image file or why it is not one), in path order; an error if
/// two items give one id.
fn items(dir: &Path) -> Result<Vec<Item>, DataError> {
    let mut first_of: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for path in paths(dir)? {
        let (image_id, file) = classify(&path);
        if let Some(first) = first_of.insert(image_id.clone(), path.clone()) {
            return Err(DataError::DuplicateImage { image_id, first, second: path });
        }
        out.push((image_id, file));
    }
    Ok(out)
}

/// The paths in `dir`, sorted so that which of two clashing files is named first does not
/// depend on the file system's order.
fn paths(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let io = |source| DataError::Io { path: dir.into(), source };
    let mut out = std::fs::read_dir(dir).map_err(io)?.map(|item| item.map(|i| i.path())).collect::<Result<Vec<_>, _>>().map_err(io)?;
    out.sort();
    Ok(out)
}

/// `X.JPEG` → (`X`, the file); anything else → (its whole name, why it is not an image). A
/// sub-folder is named as such: the layout is flat and its contents are not read.
fn classify(path: &Path) -> Item {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if path.is_dir() {
        return (name, Err(format!("not an image file: {} is a folder (the image folder is read flat)", path.display())));
    }
    let Some(utf8) = path.file_name().and_then(|n| n.to_str()) else {
        return (name, Err(format!("not an image file: the name of {} is not UTF-8", path.display())));
    };
    match image_stem(utf8) {
        Some(stem) => (stem.to_string(), Ok(path.to_path_buf())),
        None => (name, Err(format!("not an image file: {} (an image's name ends in .JPEG, .jpg or .png)", path.display()))),
    }
}

/// `X.JPEG` → `X` for the image extensions; `None` for other names and for `.JPEG` alone.
fn image_stem(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && IMAGE_EXTS.iter().any(|e| ext.eq_ignore_ascii_case(e))).then_some(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_stems() {
        assert_eq!(image_stem("ILSVRC2012_val_00000001.JPEG"), Some("ILSVRC2012_val_00000001"));
        assert_eq!(image_stem("a.b.png"), Some("a.b"));
        assert_eq!(image_stem("x.JpG"), Some("x"));
        for other in ["x.JPEG.bak", "notes.txt", ".DS_Store", ".JPEG", "noext", "x."] {
            assert_eq!(image_stem(other), None, "{other}");
        }
    }
}
