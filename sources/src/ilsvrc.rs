//! The original ILSVRC2012 download: validation JPEGs in `ILSVRC2012_img_val/` (or `val/`) and
//! boxes in `ILSVRC2012_bbox_val_v3/` (`val/*.xml` or `*.xml`). Each box file names the wnid, so
//! labels need neither the devkit's `meta.mat` nor its ILSVRC2012_ID order.

use std::path::{Path, PathBuf};

use super::{folder, voc, DataError, Entry, Synsets};

fn images_dir(root: &Path) -> Option<PathBuf> {
    ["ILSVRC2012_img_val", "val"].iter().map(|d| root.join(d)).find(|p| p.is_dir())
}

fn boxes_dir(root: &Path) -> Option<PathBuf> {
    let base = root.join("ILSVRC2012_bbox_val_v3");
    [base.join("val"), base].into_iter().find(|p| p.is_dir())
}

pub fn looks_like(root: &Path) -> bool {
    images_dir(root).is_some() && boxes_dir(root).is_some()
}

/// Every image file, every other item of the image folder, and every id with a box file but no
/// image file, as entries.
pub fn list(root: &Path) -> Result<Vec<Entry>, DataError> {
    let missing = |what: &str| DataError::Layout { path: root.into(), message: format!("ILSVRC layout: {what} not found") };
    let images = images_dir(root).ok_or_else(|| missing("ILSVRC2012_img_val/"))?;
    let boxes = boxes_dir(root).ok_or_else(|| missing("ILSVRC2012_bbox_val_v3/"))?;
    let listed = folder::xml_ids(&boxes)?;
    let annotate = |image_id: &str| {
        let xml_path = boxes.join(format!("{image_id}.xml"));
        match std::fs::read_to_string(&xml_path) {
            Ok(xml) => voc::parse(&xml).map_err(|e| format!("{}: {e}", xml_path.display())),
            Err(_) => Err(format!("no label: {} is missing", xml_path.display())),
        }
    };
    folder::entries(&images, &listed, annotate, &Synsets::imagenet())
}
