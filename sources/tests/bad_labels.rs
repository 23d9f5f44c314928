//! Label problems of the bad-input corpus (issue 6) at the source: a missing label, an XML that
//! does not parse and a box outside the image, in both folder layouts. A bad label is an error row
//! at stage `label` for that image only, naming the file; a box is passed on as annotated (mapping
//! it into the crop, and dropping or clipping it there, is decode's job, SPEC §1).

mod support;

use std::path::Path;

use types::{BoxXyxy, Stage};
use sources::{Dataset, Fetcher, Layout};
use support::{config, fake_image, read_all};

const BROKEN_XML: &str = "<annotation><object><name>n01440764</name><bndbox><xmin>1</xmin>";

fn good_xml(xmin: i32, ymin: i32, xmax: i32, ymax: i32) -> String {
    format!(
        "<annotation><object><name>n01443537</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>\
         <xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>"
    )
}

/// Reads the dataset at `root` and returns (image_id, Ok(label, boxes) | Err(stage, message)).
fn outcomes(root: &Path) -> Vec<(String, Result<(i32, Vec<BoxXyxy>), (Stage, String)>)> {
    let dataset = Dataset::open(&config(root, None, 100)).unwrap();
    read_all(&dataset, &Fetcher::new().unwrap())
        .into_iter()
        .map(|item| match item {
            Ok(s) => (s.image_id, Ok((s.label, s.boxes))),
            Err(e) => (e.image_id, Err((e.stage, e.message))),
        })
        .collect()
}

#[test]
fn kaggle_layout_reports_missing_and_broken_labels_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let images = root.join("ILSVRC/Data/CLS-LOC/val");
    let xmls = root.join("ILSVRC/Annotations/CLS-LOC/val");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&xmls).unwrap();
    for (i, id) in ["a_csv", "b_xml", "c_broken_xml", "d_nothing"].iter().enumerate() {
        std::fs::write(images.join(format!("{id}.JPEG")), fake_image(i, 100)).unwrap();
    }
    // a: from the CSV, with a box wholly outside any ImageNet image; the rest fall back to XML.
    std::fs::write(root.join("LOC_val_solution.csv"), "ImageId,PredictionString\na_csv,n01440764 5000 5000 6000 6000\n").unwrap();
    std::fs::write(xmls.join("b_xml.xml"), good_xml(-5, 2, 900, 4)).unwrap();
    std::fs::write(xmls.join("c_broken_xml.xml"), BROKEN_XML).unwrap();

    let got = outcomes(root);
    assert_eq!(got.len(), 4, "every listed image yields one item");
    // Class indices in sorted-wnid order: n01440764 (tench) is 0, n01443537 (goldfish) is 1.
    assert_eq!(got[0], ("a_csv".into(), Ok((0, vec![BoxXyxy::new(5000, 5000, 6000, 6000)]))));
    assert_eq!(got[1], ("b_xml".into(), Ok((1, vec![BoxXyxy::new(-5, 2, 900, 4)]))));
    let (id, Err((stage, message))) = &got[2] else { panic!("{:?}", got[2]) };
    assert_eq!((id.as_str(), *stage), ("c_broken_xml", Stage::Label));
    assert!(message.starts_with(&format!("{}: annotation does not parse: ", xmls.join("c_broken_xml.xml").display())), "{message}");
    let (id, Err((stage, message))) = &got[3] else { panic!("{:?}", got[3]) };
    assert_eq!((id.as_str(), *stage), ("d_nothing", Stage::Label));
    assert_eq!(message, &format!("no label: not in LOC_val_solution.csv and no {}", xmls.join("d_nothing.xml").display()));
}

#[test]
fn ilsvrc_layout_reports_missing_and_broken_labels_per_image() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let images = root.join("ILSVRC2012_img_val");
    let xmls = root.join("ILSVRC2012_bbox_val_v3/val");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&xmls).unwrap();
    for (i, id) in ["a_good", "b_broken_xml", "c_no_xml"].iter().enumerate() {
        std::fs::write(images.join(format!("{id}.JPEG")), fake_image(i, 100)).unwrap();
    }
    std::fs::write(xmls.join("a_good.xml"), good_xml(1, 2, 3, 4)).unwrap();
    std::fs::write(xmls.join("b_broken_xml.xml"), BROKEN_XML).unwrap();

    let dataset = Dataset::open(&config(root, None, 100)).unwrap();
    assert_eq!(dataset.layout, Layout::Ilsvrc);
    let got = outcomes(root);
    assert_eq!(got[0], ("a_good".into(), Ok((1, vec![BoxXyxy::new(1, 2, 3, 4)]))));
    let (_, Err((stage, message))) = &got[1] else { panic!("{:?}", got[1]) };
    assert_eq!(*stage, Stage::Label);
    assert!(message.starts_with(&format!("{}: annotation does not parse: ", xmls.join("b_broken_xml.xml").display())), "{message}");
    let (_, Err((stage, message))) = &got[2] else { panic!("{:?}", got[2]) };
    assert_eq!(*stage, Stage::Label);
    assert_eq!(message, &format!("no label: {} is missing", xmls.join("c_no_xml.xml").display()));
}
