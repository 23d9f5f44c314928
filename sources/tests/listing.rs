//! The dataset listing never silently loses, duplicates or mislabels an input (issue 12): an id
//! listed twice in the CSV and a synset mapping that is not ImageNet-1k stop the listing, naming
//! the file.

mod support;

use std::path::{Path, PathBuf};

use sources::{DataError, Dataset, Fetcher};
use support::{config, fake_image, read_all, sample_root};
use types::{BoxXyxy, Stage};

const TENCH: &str = "n01440764"; // class 0
const GOLDFISH: &str = "n01443537"; // class 1

/// What reading one entry gave: (id, Ok(label, boxes) or Err(stage, message)).
type Outcome = (String, Result<(i32, Vec<BoxXyxy>), (Stage, String)>);

fn outcomes_of(dataset: &Dataset) -> Vec<Outcome> {
    read_all(dataset, &Fetcher::new().unwrap())
        .into_iter()
        .map(|item| match item {
            Ok(s) => (s.image_id, Ok((s.label, s.boxes))),
            Err(e) => (e.image_id, Err((e.stage, e.message))),
        })
        .collect()
}

fn ok(id: &str, label: i32, boxes: &[[i32; 4]]) -> Outcome {
    (id.into(), Ok((label, boxes.iter().map(|b| BoxXyxy::new(b[0], b[1], b[2], b[3])).collect())))
}

/// A Kaggle layout at `root` with these files in the val folder (fake bytes) and this CSV body.
fn kaggle(root: &Path, files: &[&str], csv_body: &str) -> PathBuf {
    let images = root.join("ILSVRC/Data/CLS-LOC/val");
    std::fs::create_dir_all(&images).unwrap();
    for (i, name) in files.iter().enumerate() {
        std::fs::write(images.join(name), fake_image(i, 50)).unwrap();
    }
    std::fs::write(root.join("LOC_val_solution.csv"), format!("ImageId,PredictionString\n{csv_body}")).unwrap();
    images
}

fn open_err(root: &Path) -> DataError {
    Dataset::open(&config(root, None, 100)).expect_err("the listing must stop")
}

#[test]
fn an_id_listed_twice_in_the_csv_is_refused_with_both_lines() {
    let tmp = tempfile::tempdir().unwrap();
    kaggle(tmp.path(), &["a.JPEG", "b.JPEG"], &format!("a,{TENCH} 1 2 3 4\nb,{TENCH} 1 2 3 4\na,{GOLDFISH} 1 2 3 4\n"));
    let csv = tmp.path().join("LOC_val_solution.csv");
    assert_eq!(open_err(tmp.path()).to_string(), format!("{}: `a` is listed twice, on lines 2 and 4", csv.display()));

    // Without its header the first image would be eaten as one.
    std::fs::write(&csv, format!("a,{TENCH} 1 2 3 4\nb,{TENCH} 1 2 3 4\n")).unwrap();
    assert_eq!(
        open_err(tmp.path()).to_string(),
        format!("{}: line 1: header is `a,{TENCH} 1 2 3 4`, expected `ImageId,PredictionString`", csv.display())
    );

    std::fs::write(&csv, format!("ImageId,PredictionString\na,{TENCH} 1 2 3 4\n,{TENCH} 1 2 3 4\n")).unwrap();
    assert_eq!(open_err(tmp.path()).to_string(), format!("{}: line 3: empty ImageId", csv.display()));
}

/// The sample's mapping, as lines.
fn sample_mapping() -> Vec<String> {
    std::fs::read_to_string(sample_root().join("LOC_synset_mapping.txt")).unwrap().lines().map(String::from).collect()
}

#[test]
fn a_synset_mapping_that_is_not_imagenet_1k_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // `b` is a goldfish: class 1 with the full mapping, class 0 with goldfish's predecessor gone.
    kaggle(tmp.path(), &["b.JPEG"], &format!("b,{GOLDFISH} 1 2 3 4\n"));
    let mapping = tmp.path().join("LOC_synset_mapping.txt");
    let full = sample_mapping();
    assert_eq!(full.len(), 1000);
    assert!(full[0].starts_with(TENCH) && full[1].starts_with(GOLDFISH));
    let at = |text: String| format!("{}: {text}", mapping.display());

    // The real mapping, in any order and with CRLF endings, labels as the shipped list does.
    let mut shuffled = full.clone();
    shuffled.reverse();
    std::fs::write(&mapping, shuffled.join("\r\n")).unwrap();
    assert_eq!(outcomes_of(&Dataset::open(&config(tmp.path(), None, 100)).unwrap()), vec![ok("b", 1, &[[1, 2, 3, 4]])]);

    let cases: [(Vec<String>, String); 4] = [
        (
            full[1..].to_vec(),
            at(format!("lists 999 wnids, not the 1000 of ImageNet-1k (class indices would shift): missing {TENCH}")),
        ),
        (
            [full.clone(), vec!["n99999999 not a class".into()]].concat(),
            at("lists 1001 wnids, not the 1000 of ImageNet-1k (class indices would shift): \
                not ImageNet-1k wnids: n99999999 (line 1001)"
                .into()),
        ),
        (
            [full[..3].to_vec(), vec![full[1].clone()], full[3..].to_vec()].concat(),
            at(format!("wnids listed more than once: {GOLDFISH} (lines 2, 4)")),
        ),
        (
            [vec!["tench, Tinca tinca".to_string()], full[1..].to_vec()].concat(),
            at("line 1: `tench,` is not a wnid (`n` and 8 digits, then the class name)".into()),
        ),
    ];
    for (lines, expected) in cases {
        std::fs::write(&mapping, lines.join("\n")).unwrap();
        let err = open_err(tmp.path());
        assert!(matches!(err, DataError::Layout { .. }), "{err}");
        assert_eq!(err.to_string(), expected);
    }
}

