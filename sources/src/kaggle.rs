//! Kaggle "ImageNet Object Localization Challenge" layout:
//! `LOC_val_solution.csv`, `LOC_synset_mapping.txt`, `ILSVRC/Data/CLS-LOC/val/*.JPEG`,
//! `ILSVRC/Annotations/CLS-LOC/val/*.xml`. The CSV is preferred; the XMLs are the fallback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use types::BoxXyxy;

use super::{folder, voc, Annotation, DataError, Entry, Synsets};

const SOLUTION: &str = "LOC_val_solution.csv";
const MAPPING: &str = "LOC_synset_mapping.txt";
const HEADER: [&str; 2] = ["ImageId", "PredictionString"];

fn images_dir(root: &Path) -> PathBuf {
    root.join("ILSVRC/Data/CLS-LOC/val")
}

fn annotations_dir(root: &Path) -> PathBuf {
    root.join("ILSVRC/Annotations/CLS-LOC/val")
}

pub fn looks_like(root: &Path) -> bool {
    images_dir(root).is_dir()
}

type Labels = HashMap<String, Annotation>;

/// Every image file, every other item of the image folder, and every id that the CSV or an
/// annotation file lists without an image file, as entries.
pub fn list(root: &Path) -> Result<Vec<Entry>, DataError> {
    let synsets = if root.join(MAPPING).is_file() { Synsets::from_mapping_file(&root.join(MAPPING))? } else { Synsets::imagenet() };
    let csv_path = root.join(SOLUTION);
    let had_csv = csv_path.is_file();
    let labels = if had_csv { read_solution(&csv_path)? } else { HashMap::new() };
    let ann_dir = annotations_dir(root);
    let mut listed = folder::xml_ids(&ann_dir)?;
    // The CSV is preferred: an id it lists is reported as listed there.
    listed.extend(labels.keys().map(|id| (id.clone(), csv_path.clone())));
    let annotate = |image_id: &str| match labels.get(image_id) {
        Some(found) => found.clone(),
        None => read_xml(&ann_dir.join(format!("{image_id}.xml")), had_csv),
    };
    folder::entries(&images_dir(root), &listed, annotate, &synsets)
}

fn read_xml(path: &Path, had_csv: bool) -> Annotation {
    match std::fs::read_to_string(path) {
        Ok(xml) => voc::parse(&xml).map_err(|e| format!("{}: {e}", path.display())),
        Err(_) if had_csv => Err(format!("no label: not in {SOLUTION} and no {}", path.display())),
        Err(_) => Err(format!("no label: {} is missing", path.display())),
    }
}

/// `ImageId,PredictionString` with `wnid x0 y0 x1 y1` repeated per box. The header is checked
/// (without it the first image would be taken for one), and an id listed twice is refused:
/// which line holds its label is not ours to guess.
fn read_solution(path: &Path) -> Result<Labels, DataError> {
    let fail = |message: String| DataError::Layout { path: path.into(), message };
    let mut reader = csv::Reader::from_path(path).map_err(|e| fail(e.to_string()))?;
    let header = reader.headers().map_err(|e| fail(e.to_string()))?;
    if header.iter().ne(HEADER) {
        return Err(fail(format!("line 1: header is `{}`, expected `{}`", header.iter().collect::<Vec<_>>().join(","), HEADER.join(","))));
    }
    let mut out = HashMap::new();
    let mut line_of: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| fail(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let (Some(id), Some(pred)) = (record.get(0), record.get(1)) else {
            return Err(fail(format!("line {line}: expected ImageId,PredictionString")));
        };
        if id.is_empty() {
            return Err(fail(format!("line {line}: empty ImageId")));
        }
        if let Some(first) = line_of.insert(id.to_string(), line) {
            return Err(fail(format!("`{id}` is listed twice, on lines {first} and {line}")));
        }
        out.insert(id.to_string(), parse_prediction(pred));
    }
    Ok(out)
}

fn parse_prediction(pred: &str) -> Annotation {
    let tokens: Vec<&str> = pred.split_whitespace().collect();
    if tokens.is_empty() || tokens.len() % 5 != 0 {
        return Err(format!("PredictionString `{pred}` is not `wnid x0 y0 x1 y1` repeated"));
    }
    let wnid = tokens[0];
    let mut boxes = Vec::new();
    for group in tokens.chunks(5) {
        if group[0] != wnid {
            return Err(format!("PredictionString names two classes, {wnid} and {}", group[0]));
        }
        let c: Result<Vec<i32>, _> = group[1..].iter().map(|t| t.parse::<f64>().map(|v| v as i32)).collect();
        let c = c.map_err(|_| format!("PredictionString `{pred}` has a non-numeric coordinate"))?;
        boxes.push(BoxXyxy::new(c[0], c[1], c[2], c[3]));
    }
    Ok((wnid.to_string(), boxes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prediction_string_with_two_boxes() {
        let (w, b) = parse_prediction("n01751748 111 108 441 193 n01751748 1 2 3 4 ").unwrap();
        assert_eq!(w, "n01751748");
        assert_eq!(b, vec![BoxXyxy::new(111, 108, 441, 193), BoxXyxy::new(1, 2, 3, 4)]);
        assert!(parse_prediction("n01751748 1 2 3").is_err());
        assert!(parse_prediction("n01751748 a b c d").is_err());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SOLUTION);
        std::fs::write(&path, "\u{feff}ImageId,PredictionString\r\na,n01440764 1 2 3 4\r\n").unwrap();
        let labels = read_solution(&path).unwrap();
        assert_eq!(labels.len(), 1);
        assert_eq!(labels["a"], Ok(("n01440764".to_string(), vec![BoxXyxy::new(1, 2, 3, 4)])));
    }
}
