//! WebDataset shards on disk: round trip, determinism, label errors, truncation, corruption and
//! hostile member names.

mod support;

use std::path::Path;

use types::Stage;
use sha2::{Digest, Sha256};
use sources::{write_shards, DataError, Dataset, Entry, Fetcher, Layout, Location, Shard, ShardIndex, ShardSource};
use support::{config, fake_image, read_all, sample_root, tiny_kaggle, without_shard};

fn read_index(dir: &Path) -> ShardIndex {
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

#[test]
fn real_sample_round_trips_through_shards() {
    let fetch = Fetcher::new().unwrap();
    let folder = Dataset::open(&config(sample_root(), Some(25), 10)).unwrap();
    assert_eq!(folder.layout, Layout::Kaggle);
    let out = tempfile::tempdir().unwrap();
    let index = write_shards(&folder, out.path(), 7, support::dims).unwrap();
    assert_eq!(index.total, 25);
    assert_eq!(index.source_layout, Layout::Kaggle);
    assert_eq!(index.shards.iter().map(|s| s.count).collect::<Vec<_>>(), vec![7, 7, 7, 4]);
    assert_eq!(index.shards[3].name, "shard-00003");
    assert_eq!(read_index(out.path()), index, "index.json holds what write_shards returned");
    for listing in &index.shards {
        let bytes = std::fs::read(out.path().join(&listing.file)).unwrap();
        assert_eq!(bytes.len() as u64, listing.bytes);
        assert_eq!(format!("{:x}", Sha256::digest(&bytes)), listing.sha256, "{}", listing.file);
    }
    assert!(!out.path().join("shard-00000.tar.tmp").exists());

    // Auto-detected from index.json; same ids, labels, boxes and bytes as the folder.
    let shards = Dataset::open(&config(out.path(), None, 10)).unwrap();
    assert_eq!(shards.layout, Layout::Shards);
    assert_eq!(shards.len(), 25);
    assert_eq!(shards.shards.iter().map(|s| (s.index, s.count())).collect::<Vec<_>>(), vec![(0, 7), (1, 7), (2, 7), (3, 4)]);
    let direct = read_all(&folder, &fetch);
    let packed = read_all(&shards, &fetch);
    assert_eq!(direct.len(), 25);
    assert!(direct.iter().all(|r| r.is_ok()), "the sample has usable labels");
    assert!(packed.iter().take(7).all(|r| r.as_ref().unwrap().shard == "shard-00000"));
    assert_eq!(without_shard(packed), without_shard(direct.clone()));

    // The .json member carries the header size of the image.
    let first = direct[0].as_ref().unwrap();
    let names_and_meta: Vec<(String, Vec<u8>)> = tar_members(&out.path().join("shard-00000.tar")).into_iter().take(3).collect();
    let id = &first.image_id;
    assert_eq!(
        names_and_meta.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec![format!("{id}.jpg"), format!("{id}.cls"), format!("{id}.json")]
    );
    let meta: serde_json::Value = serde_json::from_slice(&names_and_meta[2].1).unwrap();
    let (w, h) = operators::decode::image_dimensions(&first.bytes).unwrap();
    assert_eq!(meta["width"], w);
    assert_eq!(meta["height"], h);
    assert_eq!(meta["boxes"][0][0], first.boxes[0].x0);
    assert_eq!(names_and_meta[1].1, first.label.to_string().into_bytes());

    // `limit` cuts across shards.
    let limited = Dataset::open(&config(out.path(), Some(9), 10)).unwrap();
    assert_eq!(limited.shards.iter().map(Shard::count).collect::<Vec<_>>(), vec![7, 2]);
    let limited_items = read_all(&limited, &fetch);
    assert_eq!(limited_items.last().unwrap().as_ref().unwrap().image_id, direct[8].as_ref().unwrap().image_id);
}

#[test]
fn rewriting_gives_byte_identical_files() {
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 6, 700);
    let dataset = Dataset::open(&config(src.path(), None, 4)).unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_shards(&dataset, a.path(), 4, support::dims).unwrap();
    // A different mtime on the sources must not leak into the tars.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    for entry in std::fs::read_dir(src.path().join("ILSVRC/Data/CLS-LOC/val")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
    }
    write_shards(&Dataset::open(&config(src.path(), None, 4)).unwrap(), b.path(), 4, support::dims).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(a.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec!["index.json", "shard-00000.tar", "shard-00001.tar"]);
    for name in names {
        let (x, y) = (std::fs::read(a.path().join(&name)).unwrap(), std::fs::read(b.path().join(&name)).unwrap());
        assert!(x == y, "{name:?} differs between two writes");
    }
}

#[test]
fn unusable_labels_are_listed_not_packed_and_read_back_as_errors() {
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 5, 300);
    let folder = Dataset::open(&config(src.path(), None, 100)).unwrap();
    let out = tempfile::tempdir().unwrap();
    let index = write_shards(&folder, out.path(), 2, support::dims).unwrap();
    assert_eq!(index.total, 5);
    assert_eq!(index.shards[0].keys, vec!["ILSVRC2012_val_00000000", "ILSVRC2012_val_00000001"]);
    assert_eq!(index.shards[0].errors["ILSVRC2012_val_00000001"].stage, "label");
    assert!(index.shards[0].errors["ILSVRC2012_val_00000001"].message.contains("unknown wnid n99999999"));
    assert!(index.shards[1].errors.contains_key("ILSVRC2012_val_00000003"));
    assert_eq!(index.shards[1].sample_sha256.len(), 1);
    // The fake images have no readable header: no width/height, bytes kept as they were.
    let fetch = Fetcher::new().unwrap();
    let packed = read_all(&Dataset::open(&config(out.path(), None, 100)).unwrap(), &fetch);
    let direct = read_all(&folder, &fetch);
    assert_eq!(packed.len(), 5);
    assert_eq!(packed.iter().filter(|r| r.is_ok()).count(), 3, "images_in = ok + errors");
    let row = packed[1].as_ref().unwrap_err();
    assert_eq!((row.stage, row.shard.as_str()), (Stage::Label, "shard-00000"));
    assert_eq!(packed[2].as_ref().unwrap().bytes, fake_image(2, 300));
    assert_eq!(packed[2].as_ref().unwrap().boxes[1], types::BoxXyxy::new(5, 6, 7, 8));
    assert_eq!(without_shard(packed), without_shard(direct));
}

/// Writes 6 fake images of 2000 bytes into one shard and returns (dir, tar path).
fn one_shard_of_six() -> (tempfile::TempDir, std::path::PathBuf) {
    let (out, tar, _) = one_shard_of_six_with_source();
    (out, tar)
}

/// Like [`one_shard_of_six`], also returning the source folder as the label messages name it.
fn one_shard_of_six_with_source() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 6, 2000);
    let dataset = Dataset::open(&config(src.path(), None, 100)).unwrap();
    let out = tempfile::tempdir().unwrap();
    write_shards(&dataset, out.path(), 6, support::dims).unwrap();
    let tar = out.path().join("shard-00000.tar");
    (out, tar, src.path().display().to_string())
}

#[test]
fn truncated_tar_yields_count_items_with_the_tail_as_errors() {
    let (out, tar) = one_shard_of_six();
    let bytes = std::fs::read(&tar).unwrap();
    // Cut inside the image of the 5th key (index 4): keys 0, 2 packed before it stay readable.
    let fifth = bytes.windows(16).position(|w| w == b"FAKE-IMAGE-0004-").unwrap();
    std::fs::write(&tar, &bytes[..fifth + 500]).unwrap();
    let dataset = Dataset::open(&config(out.path(), None, 100)).unwrap();
    let items: Vec<_> = dataset.shards[0].open(&Fetcher::new().unwrap()).collect();
    assert_eq!(items.len(), 6);
    let ok: Vec<&str> = items.iter().filter_map(|r| r.as_ref().ok()).map(|s| s.image_id.as_str()).collect();
    assert_eq!(ok, vec!["ILSVRC2012_val_00000000", "ILSVRC2012_val_00000002"]);
    assert_eq!(items[1].as_ref().unwrap_err().stage, Stage::Label, "listed error keeps its stage");
    for (i, item) in items.iter().enumerate().skip(4) {
        let row = item.as_ref().unwrap_err();
        assert_eq!((row.image_id.as_str(), row.shard.as_str(), row.stage), (format!("ILSVRC2012_val_{i:08}").as_str(), "shard-00000", Stage::Read));
        assert!(row.message.starts_with("shard shard-00000: "), "{}", row.message);
        assert!(row.message.contains("truncated"), "{}", row.message);
    }
}

#[test]
fn open_only_yields_the_wanted_keys_as_a_full_read_does() {
    let (out, tar) = one_shard_of_six();
    let bytes = std::fs::read(&tar).unwrap();
    let fifth = bytes.windows(16).position(|w| w == b"FAKE-IMAGE-0004-").unwrap();
    std::fs::write(&tar, &bytes[..fifth + 500]).unwrap();
    let fetch = Fetcher::new().unwrap();
    let shard = &Dataset::open(&config(out.path(), None, 100)).unwrap().shards[0];
    let full: Vec<_> = shard.open(&fetch).collect();
    let only = |keys: &[&str]| -> Vec<_> { shard.open_only(&keys.iter().map(|k| k.to_string()).collect(), &fetch).collect() };
    // Before the cut: both read, nothing else yielded (the truncated tail is never reached).
    assert_eq!(only(&[&key(2), &key(0), "not-in-the-shard"]), vec![full[0].clone(), full[2].clone()], "shard order");
    // A listed label error and a key in the truncated tail fail as in a full read.
    assert_eq!(only(&[&key(5), &key(1)]), vec![full[1].clone(), full[5].clone()]);
    assert!(only(&["not-in-the-shard"]).is_empty());

    // A folder shard: only the wanted files are read, each as a full read gives it.
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 6, 2000);
    let folder = &Dataset::open(&config(src.path(), None, 100)).unwrap().shards[0];
    let full: Vec<_> = folder.open(&fetch).collect();
    let got: Vec<_> = folder.open_only(&[key(4), key(3)].into_iter().collect(), &fetch).collect();
    assert_eq!(got, vec![full[3].clone(), full[4].clone()]);
}

#[test]
fn corrupted_sample_fails_alone_on_its_digest() {
    let (out, tar) = one_shard_of_six();
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes.windows(16).position(|w| w == b"FAKE-IMAGE-0002-").unwrap();
    bytes[at + 100] ^= 0x20;
    std::fs::write(&tar, &bytes).unwrap();
    let index = read_index(out.path());
    assert_ne!(format!("{:x}", Sha256::digest(&bytes)), index.shards[0].sha256, "the file no longer matches");
    let items: Vec<_> =
        Dataset::open(&config(out.path(), None, 100)).unwrap().shards[0].open(&Fetcher::new().unwrap()).collect();
    assert_eq!(items.len(), 6);
    let row = items[2].as_ref().unwrap_err();
    assert_eq!((row.image_id.as_str(), row.stage), ("ILSVRC2012_val_00000002", Stage::Read));
    assert!(row.message.contains("does not match its sha256"), "{}", row.message);
    for i in [0, 4, 5] {
        assert_eq!(items[i].as_ref().unwrap().bytes, fake_image(i, 2000), "sample {i} is untouched");
    }
}

#[test]
fn member_names_that_are_paths_are_rejected_and_never_written() {
    let (out, tar) = one_shard_of_six();
    let index = read_index(out.path());
    // Rebuild the tar with a traversal name first, keeping its size so the index still fits.
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let name = b"../evil.jpg";
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(5);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    builder.append(&header, &b"pwned"[..]).unwrap();
    let mut original = tar::Archive::new(std::fs::File::open(&tar).unwrap());
    for entry in original.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        builder.append(&mut header, &data[..]).unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    std::fs::write(&tar, &bytes).unwrap();
    let mut index = index;
    index.shards[0].bytes = bytes.len() as u64;
    std::fs::write(out.path().join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let items: Vec<_> =
        Dataset::open(&config(out.path(), None, 100)).unwrap().shards[0].open(&Fetcher::new().unwrap()).collect();
    assert_eq!(items.len(), 6);
    for (i, item) in items.iter().enumerate().filter(|(i, _)| ![1, 3].contains(i)) {
        let row = item.as_ref().unwrap_err();
        assert!(row.message.contains("`../evil.jpg` is not a plain `key.ext` name: rejected"), "{i}: {}", row.message);
    }
    assert!(!out.path().parent().unwrap().join("evil.jpg").exists());
    assert!(!out.path().join("evil.jpg").exists());
}

#[test]
fn image_ids_that_are_paths_cannot_be_packed() {
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 1, 10);
    let file = src.path().join("ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_00000000.JPEG");
    let entry = Entry { image_id: "../evil".into(), file: Ok(file), label: Ok(3), boxes: vec![] };
    let dataset = Dataset {
        location: Location::Local(src.path().into()),
        layout: Layout::Kaggle,
        shards: vec![Shard { index: 0, name: "val-00000".into(), source: ShardSource::Files(vec![entry]) }],
    };
    let out = tempfile::tempdir().unwrap();
    let err = write_shards(&dataset, &out.path().join("shards"), 4, support::dims).unwrap_err();
    assert!(matches!(err, DataError::Shard { .. }), "{err}");
    assert!(err.to_string().contains("image id `../evil` is not a plain name"), "{err}");
    assert!(!out.path().join("evil.jpg").exists() && !out.path().join("shards/index.json").exists());
    assert_eq!(std::fs::read_dir(out.path().join("shards")).unwrap().count(), 0, "no temp file left behind");
}

#[test]
fn index_with_a_path_key_or_wrong_count_is_refused() {
    let (out, _) = one_shard_of_six();
    let original = read_index(out.path());
    let write = |index: &ShardIndex| std::fs::write(out.path().join("index.json"), serde_json::to_vec(index).unwrap()).unwrap();

    let mut bad = original.clone();
    let digest = bad.shards[0].sample_sha256.remove("ILSVRC2012_val_00000000").unwrap();
    bad.shards[0].keys[0] = "../x".into();
    bad.shards[0].sample_sha256.insert("../x".into(), digest);
    write(&bad);
    let err = Dataset::open(&config(out.path(), None, 100)).unwrap_err().to_string();
    assert!(err.contains("index.json: shard `shard-00000`: key `../x` is not a plain name"), "{err}");

    let mut bad = original.clone();
    bad.shards[0].count = 7;
    write(&bad);
    let err = Dataset::open(&config(out.path(), None, 100)).unwrap_err().to_string();
    assert!(err.contains("`count` 7 but 6 keys"), "{err}");

    let mut bad = original;
    bad.shards[0].file = "../shard-00000.tar".into();
    write(&bad);
    let err = Dataset::open(&config(out.path(), None, 100)).unwrap_err().to_string();
    assert!(err.contains("is not a plain `.tar` file name"), "{err}");
}

/// The members of `tar` as (name, bytes), in order.
fn tar_members(tar: &Path) -> Vec<(String, Vec<u8>)> {
    tar::Archive::new(std::fs::File::open(tar).unwrap())
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect()
}

/// Rewrites `tar` with its members (name, bytes) edited by `edit`, and fixes its size and digest
/// in the index, so that only the members disagree with it.
fn rewrite_tar(out: &Path, tar: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) {
    let mut members = tar_members(tar);
    edit(&mut members);
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in &members {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    let bytes = builder.into_inner().unwrap();
    std::fs::write(tar, &bytes).unwrap();
    let mut index = read_index(out);
    index.shards[0].bytes = bytes.len() as u64;
    index.shards[0].sha256 = format!("{:x}", Sha256::digest(&bytes));
    std::fs::write(out.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// What reading one key gave: (id, Ok or Err(stage, message)).
type Outcome = (String, Result<(), (Stage, String)>);

/// The outcome of each item of the dataset at `dir`, cut to `limit`.
fn outcomes(dir: &Path, limit: Option<usize>) -> Vec<Outcome> {
    let dataset = Dataset::open(&config(dir, limit, 100)).unwrap();
    read_all(&dataset, &Fetcher::new().unwrap())
        .into_iter()
        .map(|item| match item {
            Ok(s) => (s.image_id, Ok(())),
            Err(e) => (e.image_id, Err((e.stage, e.message))),
        })
        .collect()
}

fn key(i: usize) -> String {
    format!("ILSVRC2012_val_{i:08}")
}

#[test]
fn a_member_the_index_does_not_list_fails_every_key_not_yet_yielded() {
    // Keys 1 and 3 are label errors listed in the index, with no members; 0, 2, 4, 5 are packed.
    let label_error = |i: usize| {
        let message = match i {
            1 => "unknown wnid n99999999".to_string(),
            _ => format!("no label: not in LOC_val_solution.csv and no SRC/ILSVRC/Annotations/CLS-LOC/val/{}.xml", key(i)),
        };
        (key(i), Err((Stage::Label, message)))
    };
    let mismatch = |member: &str, after: usize| {
        format!(
            "member `{member}` follows `{}` but is not a later key of the index: the tar does not match index.json",
            key(after)
        )
    };
    let not_read = |i: usize, why: &str| (key(i), Err((Stage::Read, format!("shard shard-00000: {why}; `{}` not read", key(i)))));
    let with_src = |mut got: Vec<Outcome>, src: &str| {
        // Label messages name the source folder of the pack, which is gone; compare past it.
        for (_, r) in &mut got {
            if let Err((Stage::Label, m)) = r {
                *m = m.replace(src, "SRC");
            }
        }
        got
    };

    // An extra sample after the last key: the last key is not yielded yet when it is seen.
    let (out, tar, src) = one_shard_of_six_with_source();
    rewrite_tar(out.path(), &tar, |m| m.push(("zz_extra.jpg".into(), b"extra".to_vec())));
    let why = mismatch("zz_extra.jpg", 5);
    assert_eq!(
        with_src(outcomes(out.path(), None), &src),
        vec![
            (key(0), Ok(())),
            label_error(1),
            (key(2), Ok(())),
            label_error(3),
            (key(4), Ok(())),
            (key(5), Err((Stage::Read, format!("shard shard-00000: {why}")))),
        ]
    );
    // With `limit` the shard is cut: members past the last kept key are expected there.
    assert_eq!(with_src(outcomes(out.path(), Some(3)), &src), vec![(key(0), Ok(())), label_error(1), (key(2), Ok(()))]);

    // A member whose name is no key at all, after key 4 (whose members end at 9): key 4 falls,
    // unless `limit` cut the shard right there.
    let (out, tar, src) = one_shard_of_six_with_source();
    rewrite_tar(out.path(), &tar, |m| m.insert(9, ("not a key.jpg".into(), b"extra".to_vec())));
    let why = "member `not a key.jpg` is not a plain `key.ext` name: rejected";
    let whole = [(key(0), Ok(())), label_error(1), (key(2), Ok(())), label_error(3)];
    assert_eq!(
        with_src(outcomes(out.path(), None), &src),
        [whole.to_vec(), vec![(key(4), Err((Stage::Read, format!("shard shard-00000: {why}")))), not_read(5, why)]].concat()
    );
    assert_eq!(with_src(outcomes(out.path(), Some(5)), &src), [whole.to_vec(), vec![(key(4), Ok(()))]].concat());

    // An extra sample after key 0 (its three members come first): key 0 and every packed key after it fail.
    let (out, tar, src) = one_shard_of_six_with_source();
    rewrite_tar(out.path(), &tar, |m| m.insert(3, ("zz_extra.jpg".into(), b"extra".to_vec())));
    let why = mismatch("zz_extra.jpg", 0);
    assert_eq!(
        with_src(outcomes(out.path(), None), &src),
        vec![
            (key(0), Err((Stage::Read, format!("shard shard-00000: {why}")))),
            label_error(1),
            not_read(2, &why),
            label_error(3),
            not_read(4, &why),
            not_read(5, &why),
        ]
    );

    // Key 0's image again after key 2's sample: key 0 does not yield twice, key 2 and on fail.
    let (out, tar, src) = one_shard_of_six_with_source();
    let again = format!("{}.jpg", key(0));
    rewrite_tar(out.path(), &tar, |m| m.insert(6, (again.clone(), b"extra".to_vec())));
    let why = mismatch(&again, 2);
    assert_eq!(
        with_src(outcomes(out.path(), None), &src),
        vec![
            (key(0), Ok(())),
            label_error(1),
            (key(2), Err((Stage::Read, format!("shard shard-00000: {why}")))),
            label_error(3),
            not_read(4, &why),
            not_read(5, &why),
        ]
    );
}

#[test]
fn an_index_listing_a_key_twice_or_one_tar_twice_is_refused() {
    let src = tempfile::tempdir().unwrap();
    tiny_kaggle(src.path(), 6, 100);
    let out = tempfile::tempdir().unwrap();
    write_shards(&Dataset::open(&config(src.path(), None, 100)).unwrap(), out.path(), 3, support::dims).unwrap();
    let original = read_index(out.path());
    let index_path = out.path().join("index.json");
    let refused = |text: &str| {
        std::fs::write(&index_path, text).unwrap();
        Dataset::open(&config(out.path(), None, 100)).unwrap_err().to_string()
    };
    let prefix = format!("{}: ", index_path.display());

    // In `keys`, across shards: key 0 again in place of key 3 (a listed error).
    let mut bad = original.clone();
    bad.shards[1].keys[0] = key(0);
    bad.shards[1].errors.remove(&key(3));
    bad.shards[1].sample_sha256.insert(key(0), original.shards[0].sample_sha256[&key(0)].clone());
    assert_eq!(refused(&serde_json::to_string(&bad).unwrap()), format!("{prefix}shard `shard-00001`: key `{}` is listed twice", key(0)));

    // In a JSON object, where a plain map would keep the last value without a word.
    let text = serde_json::to_string(&original).unwrap();
    let digest = &original.shards[0].sample_sha256[&key(0)];
    let twice = text.replacen(
        &format!("\"sample_sha256\":{{\"{}\":\"{digest}\"", key(0)),
        &format!("\"sample_sha256\":{{\"{}\":\"{}\",\"{}\":\"{digest}\"", key(0), "0".repeat(64), key(0)),
        1,
    );
    assert_ne!(twice, text);
    let err = refused(&twice);
    assert!(err.starts_with(&format!("{prefix}key `{}` appears twice in one JSON object at line 1 column ", key(0))), "{err}");
    let error_json = serde_json::to_string(&original.shards[0].errors[&key(1)]).unwrap();
    let twice = text.replacen(
        &format!("\"errors\":{{\"{}\":{error_json}", key(1)),
        &format!("\"errors\":{{\"{}\":{error_json},\"{}\":{error_json}", key(1), key(1)),
        1,
    );
    assert_ne!(twice, text);
    let err = refused(&twice);
    assert!(err.starts_with(&format!("{prefix}key `{}` appears twice in one JSON object at line 1 column ", key(1))), "{err}");

    // Two shards reading one tar.
    let mut bad = original.clone();
    bad.shards[1].file = "shard-00000.tar".into();
    assert_eq!(
        refused(&serde_json::to_string(&bad).unwrap()),
        format!("{prefix}shard `shard-00001`: `file` `shard-00000.tar` is also the file of shard `shard-00000`")
    );
}
