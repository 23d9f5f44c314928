//! The dataset listing never silently loses, duplicates or mislabels an input (issue 12): two
//! files for one id, an id listed twice in the CSV and a synset mapping that is not ImageNet-1k
//! stop the listing, naming the file; every other item of the image folder, and every id the
//! labels list without an image file, reads as exactly one error row naming the file.

mod support;

use std::path::{Path, PathBuf};

use sources::{write_shards, DataError, Dataset, Fetcher, Layout};
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

fn read_error(id: &str, message: String) -> Outcome {
    (id.into(), Err((Stage::Read, message)))
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

fn voc_xml(wnid: &str) -> String {
    format!(
        "<annotation><object><name>{wnid}</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>\
         </bndbox></object></annotation>"
    )
}

#[test]
fn two_files_for_one_id_stop_the_listing_naming_both() {
    for (files, first, second) in [
        (["X.JPEG", "X.jpg"], "X.JPEG", "X.jpg"),
        (["X.png", "X.JPEG"], "X.JPEG", "X.png"),
        // An extensionless `X` next to `X.JPEG` is a second file for `X`, too.
        (["X", "X.JPEG"], "X", "X.JPEG"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let images = kaggle(tmp.path(), &files, &format!("X,{TENCH} 1 2 3 4\n"));
        std::fs::write(images.join("Y.JPEG"), b"y").unwrap();
        let err = open_err(tmp.path());
        let DataError::DuplicateImage { image_id, first: a, second: b } = &err else { panic!("{err}") };
        assert_eq!((image_id.as_str(), a, b), ("X", &images.join(first), &images.join(second)));
        assert_eq!(
            err.to_string(),
            format!("{} and {}: two files for image id `X`; keep one", images.join(first).display(), images.join(second).display())
        );
    }
    // The same in the ILSVRC layout.
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("ILSVRC2012_img_val");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(tmp.path().join("ILSVRC2012_bbox_val_v3/val")).unwrap();
    std::fs::write(images.join("Z.jpeg"), b"a").unwrap();
    std::fs::write(images.join("Z.JPEG"), b"b").unwrap();
    let err = open_err(tmp.path());
    assert_eq!(
        err.to_string(),
        format!("{} and {}: two files for image id `Z`; keep one", images.join("Z.JPEG").display(), images.join("Z.jpeg").display())
    );
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

#[test]
fn every_item_of_the_kaggle_folder_and_every_listed_id_reads_as_one_item() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let images = kaggle(
        root,
        &["a.JPEG", "b.png", "notes.txt", ".DS_Store", "c.JPEG.bak"],
        &format!("a,{TENCH} 1 2 3 4\nb,{GOLDFISH} 5 6 7 8\nd,{TENCH} 1 1 2 2\n"),
    );
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::write(images.join("sub/f.JPEG"), b"inside").unwrap();
    let xmls = root.join("ILSVRC/Annotations/CLS-LOC/val");
    std::fs::create_dir_all(&xmls).unwrap();
    // `a` has both a CSV line and a box file (the CSV wins); `e` only a box file, and no image.
    std::fs::write(xmls.join("a.xml"), voc_xml(GOLDFISH)).unwrap();
    std::fs::write(xmls.join("e.xml"), voc_xml(TENCH)).unwrap();
    let csv = root.join("LOC_val_solution.csv");
    let not_image = |name: &str| {
        format!("not an image file: {} (an image's name ends in .JPEG, .jpg or .png)", images.join(name).display())
    };
    let no_file = |id: &str, listing: &Path| {
        format!("no image file: `{id}` is listed in {} but {} has no {id}.JPEG, .jpg or .png", listing.display(), images.display())
    };
    let expected = vec![
        read_error(".DS_Store", not_image(".DS_Store")),
        ok("a", 0, &[[1, 2, 3, 4]]),
        ok("b", 1, &[[5, 6, 7, 8]]),
        read_error("c.JPEG.bak", not_image("c.JPEG.bak")),
        read_error("d", no_file("d", &csv)),
        read_error("e", no_file("e", &xmls.join("e.xml"))),
        read_error("notes.txt", not_image("notes.txt")),
        read_error(
            "sub",
            format!("not an image file: {} is a folder (the image folder is read flat)", images.join("sub").display()),
        ),
    ];
    let dataset = Dataset::open(&config(root, None, 3)).unwrap();
    assert_eq!(dataset.layout, Layout::Kaggle);
    assert_eq!(dataset.len(), 8);
    assert_eq!(dataset.shards.iter().map(|s| s.count()).collect::<Vec<_>>(), vec![3, 3, 2]);
    assert_eq!(outcomes_of(&dataset), expected);
    let samples = read_all(&dataset, &Fetcher::new().unwrap());
    assert_eq!(samples[2].as_ref().unwrap().bytes, fake_image(1, 50), "b is read from b.png");

    // `limit` takes the first entries in id order, whatever they yield; shards are chunks of them.
    let limited = Dataset::open(&config(root, Some(4), 3)).unwrap();
    assert_eq!(limited.shards.iter().map(|s| (s.name.as_str(), s.count())).collect::<Vec<_>>(), vec![("val-00000", 3), ("val-00001", 1)]);
    assert_eq!(outcomes_of(&limited), expected[..4].to_vec());
}

#[test]
fn every_item_of_the_ilsvrc_folder_and_every_box_file_reads_as_one_item() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("ILSVRC2012_img_val");
    let xmls = tmp.path().join("ILSVRC2012_bbox_val_v3/val");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::create_dir_all(&xmls).unwrap();
    std::fs::write(images.join("a.JPEG"), b"a").unwrap();
    std::fs::write(images.join("a.JPEG.bak"), b"old a").unwrap();
    std::fs::write(xmls.join("a.xml"), voc_xml(GOLDFISH)).unwrap();
    std::fs::write(xmls.join("z.xml"), voc_xml(TENCH)).unwrap();
    std::fs::write(xmls.join("README"), b"not an annotation").unwrap();

    let dataset = Dataset::open(&config(tmp.path(), None, 100)).unwrap();
    assert_eq!(dataset.layout, Layout::Ilsvrc);
    assert_eq!(
        outcomes_of(&dataset),
        vec![
            ok("a", 1, &[[1, 2, 3, 4]]),
            read_error(
                "a.JPEG.bak",
                format!("not an image file: {} (an image's name ends in .JPEG, .jpg or .png)", images.join("a.JPEG.bak").display())
            ),
            read_error(
                "sub",
                format!("not an image file: {} is a folder (the image folder is read flat)", images.join("sub").display())
            ),
            read_error(
                "z",
                format!(
                    "no image file: `z` is listed in {} but {} has no z.JPEG, .jpg or .png",
                    xmls.join("z.xml").display(),
                    images.display()
                )
            ),
        ]
    );
}

#[test]
fn a_folder_with_no_image_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let images = kaggle(tmp.path(), &["notes.txt"], &format!("a,{TENCH} 1 2 3 4\n"));
    let err = open_err(tmp.path());
    assert_eq!(
        err.to_string(),
        format!(
            "{}: no image files found (entries without one: 2; the first: no image file: `a` is listed in {} but {} has \
             no a.JPEG, .jpg or .png)",
            tmp.path().display(),
            tmp.path().join("LOC_val_solution.csv").display(),
            images.display()
        )
    );
}

#[test]
fn odd_entries_pack_into_shards_as_listed_errors_and_read_back_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    kaggle(&src, &["a.JPEG", "notes.txt"], &format!("a,{TENCH} 1 2 3 4\nd,{TENCH} 1 1 2 2\n"));
    let folder = Dataset::open(&config(&src, None, 100)).unwrap();
    let index = write_shards(&folder, &tmp.path().join("shards"), 2, support::dims).unwrap();
    assert_eq!(index.shards.iter().map(|s| s.keys.clone()).collect::<Vec<_>>(), vec![vec!["a", "d"], vec!["notes.txt"]]);
    assert_eq!((index.shards[0].errors["d"].stage.as_str(), index.shards[1].errors["notes.txt"].stage.as_str()), ("read", "read"));
    let packed = Dataset::open(&config(tmp.path().join("shards"), None, 100)).unwrap();
    assert_eq!(outcomes_of(&packed), outcomes_of(&folder));

    // A key cannot start with a dot: packing stops, naming the id, instead of dropping it.
    std::fs::write(src.join("ILSVRC/Data/CLS-LOC/val/.DS_Store"), b"mac").unwrap();
    let folder = Dataset::open(&config(&src, None, 100)).unwrap();
    let err = write_shards(&folder, &tmp.path().join("shards2"), 2, support::dims).unwrap_err();
    assert_eq!(err.to_string(), "shard val-00000: image id `.DS_Store` is not a plain name ([A-Za-z0-9_.-]) and cannot be a key");
}

#[test]
fn the_real_sample_still_lists_its_300_images_with_their_labels() {
    let dataset = Dataset::open(&config(sample_root(), None, 100)).unwrap();
    assert_eq!(dataset.layout, Layout::Kaggle);
    assert_eq!(dataset.len(), 300);
    let got = outcomes_of(&dataset);
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(|(_, r)| r.is_ok()), "every sample image has a file and a label");
    // From LOC_val_solution.csv; class = line of the wnid in LOC_synset_mapping.txt, minus one.
    assert_eq!(got[0], ok("ILSVRC2012_val_00000001", 65, &[[111, 108, 441, 193]])); // n01751748 sea snake
    assert_eq!(got[1], ok("ILSVRC2012_val_00000006", 57, &[[105, 204, 358, 279]])); // n01735189 garter snake
    assert_eq!(got[2], ok("ILSVRC2012_val_00000007", 334, &[[89, 75, 495, 268]])); // n02346627 porcupine
    assert_eq!(got[298], ok("ILSVRC2012_val_00008334", 217, &[[22, 18, 162, 160]])); // n02102040 springer
    assert_eq!(got[299], ok("ILSVRC2012_val_00008374", 187, &[[43, 5, 226, 226]])); // n02094433 Yorkshire terrier
}
