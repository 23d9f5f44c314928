//! The original ILSVRC2012 layout (JPEG folder + per-image VOC box files, labels from the wnids)
//! lists exactly what the Kaggle layout lists for the same images.

mod support;

use sources::{Dataset, Fetcher, Layout};
use support::{config, read_all, sample_root, without_shard};

#[test]
fn ilsvrc_layout_reads_like_kaggle() {
    let kaggle = sample_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("ILSVRC2012_img_val")).unwrap();
    std::fs::create_dir_all(root.join("ILSVRC2012_bbox_val_v3/val")).unwrap();
    let images = kaggle.join("ILSVRC/Data/CLS-LOC/val");
    let boxes = kaggle.join("ILSVRC/Annotations/CLS-LOC/val");
    let mut ids: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids.truncate(30);
    for id in &ids {
        std::os::unix::fs::symlink(images.join(format!("{id}.JPEG")), root.join(format!("ILSVRC2012_img_val/{id}.JPEG")))
            .unwrap();
        std::fs::copy(boxes.join(format!("{id}.xml")), root.join(format!("ILSVRC2012_bbox_val_v3/val/{id}.xml"))).unwrap();
    }
    // One image without its box file: its label is unknown, and that must be said, not guessed.
    std::fs::remove_file(root.join(format!("ILSVRC2012_bbox_val_v3/val/{}.xml", ids[3]))).unwrap();

    let fetch = Fetcher::new().unwrap();
    let ilsvrc = Dataset::open(&config(root, None, 8)).unwrap();
    assert_eq!(ilsvrc.layout, Layout::Ilsvrc);
    let reference = Dataset::open(&config(&kaggle, Some(30), 8)).unwrap();
    let ours = without_shard(read_all(&ilsvrc, &fetch));
    let theirs = without_shard(read_all(&reference, &fetch));
    assert_eq!(ours.len(), 30);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        if i == 3 {
            let err = a.as_ref().unwrap_err();
            assert_eq!(err.image_id, ids[3]);
            assert!(err.message.contains("no label"), "{}", err.message);
        } else {
            // Same id, class index (sorted-wnid order), boxes and bytes.
            assert_eq!(a, b, "image {i}");
        }
    }
}
