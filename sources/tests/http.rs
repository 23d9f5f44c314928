//! Shards behind a URL: a loopback HTTP server serves a shard folder; reading over HTTP must
//! equal reading the folder, and `prefetch` must start the next download before `open`.

mod support;

use std::time::{Duration, Instant};

use types::Stage;
use sources::{write_shards, Dataset, Fetcher, Layout, Location};
use support::{config, read_all, sample_root, tiny_kaggle, without_shard, HttpServer};

/// Real sample, 20 images in shards of 6, served from `<tmp>/val/`.
fn served_shards(limit: usize) -> (tempfile::TempDir, HttpServer) {
    let tmp = tempfile::tempdir().unwrap();
    let folder = Dataset::open(&config(sample_root(), Some(limit), 100)).unwrap();
    write_shards(&folder, &tmp.path().join("val"), 6, support::dims).unwrap();
    let server = HttpServer::serve(tmp.path().to_path_buf());
    (tmp, server)
}

#[test]
fn http_shards_read_like_local_shards() {
    let (tmp, server) = served_shards(20);
    let fetch = Fetcher::new().unwrap();
    let local = Dataset::open(&config(tmp.path().join("val"), None, 100)).unwrap();
    // No trailing slash: the URL names the folder either way.
    let remote = Dataset::open(&config(server.url("val"), None, 100)).unwrap();
    assert_eq!(remote.layout, Layout::Shards);
    assert!(matches!(&remote.location, Location::Url(u) if u.as_str() == server.url("val")));
    assert_eq!(remote.shards.iter().map(|s| s.count()).collect::<Vec<_>>(), vec![6, 6, 6, 2]);
    let remote_items = read_all(&remote, &fetch);
    let local_items = read_all(&local, &fetch);
    assert_eq!(remote_items.len(), 20);
    assert!(remote_items.iter().all(|r| r.is_ok()));
    assert_eq!(remote_items, local_items, "same samples, same shard names");
    // And the same as the original folder.
    let folder = Dataset::open(&config(sample_root(), Some(20), 100)).unwrap();
    assert_eq!(without_shard(remote_items), without_shard(read_all(&folder, &fetch)));
    let requests = server.requests();
    assert!(requests.contains(&"GET /val/index.json".to_string()), "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.as_str() == "GET /val/shard-00003.tar").count(), 1, "{requests:?}");
}

#[test]
fn prefetch_starts_the_next_download_before_open() {
    let (_tmp, server) = served_shards(12);
    let fetch = Fetcher::new().unwrap();
    let dataset = Dataset::open(&config(server.url("val/"), None, 100)).unwrap();
    let (first, second) = (&dataset.shards[0], &dataset.shards[1]);
    let next = "GET /val/shard-00001.tar".to_string();

    let mut reader = first.open(&fetch);
    let first_item = reader.next().unwrap().unwrap();
    fetch.prefetch(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.requests().contains(&next) {
        assert!(Instant::now() < deadline, "no request for the next shard after prefetch: {:?}", server.requests());
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next shard is on its way while this one still streams.
    let rest: Vec<_> = reader.collect();
    assert_eq!(rest.len() + 1, first.count());
    assert_eq!(first_item.shard, "shard-00000");

    let items: Vec<_> = second.open(&fetch).collect();
    assert_eq!(items.len(), 6);
    assert!(items.iter().all(|r| r.as_ref().is_ok_and(|s| s.shard == "shard-00001")));
    let requests = server.requests();
    assert_eq!(requests.iter().filter(|r| **r == next).count(), 1, "open took over the prefetched download: {requests:?}");
}

#[test]
fn missing_and_truncated_remote_shards_become_error_rows() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_kaggle(&tmp.path().join("src"), 6, 3000);
    let folder = Dataset::open(&config(tmp.path().join("src"), None, 100)).unwrap();
    write_shards(&folder, &tmp.path().join("val"), 3, support::dims).unwrap();
    let shard0 = tmp.path().join("val/shard-00000.tar");
    let bytes = std::fs::read(&shard0).unwrap();
    std::fs::write(&shard0, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::remove_file(tmp.path().join("val/shard-00001.tar")).unwrap();
    let server = HttpServer::serve(tmp.path().to_path_buf());
    let dataset = Dataset::open(&config(server.url("val"), None, 100)).unwrap();
    let items = read_all(&dataset, &Fetcher::new().unwrap());
    assert_eq!(items.len(), 6);

    // Shard 0: key 0 packed first and whole, key 1 a listed label error, key 2 cut off.
    assert_eq!(items[0].as_ref().unwrap().image_id, "ILSVRC2012_val_00000000");
    assert_eq!(items[1].as_ref().unwrap_err().stage, Stage::Label);
    let row = items[2].as_ref().unwrap_err();
    assert_eq!((row.stage, row.shard.as_str()), (Stage::Read, "shard-00000"));
    assert!(row.message.contains(&format!("ends after {} of {} bytes", bytes.len() / 2, bytes.len())), "{}", row.message);
    // Shard 1 is gone: its packed keys fail naming the URL, its listed error stays a label error.
    assert_eq!(items[3].as_ref().unwrap_err().stage, Stage::Label);
    for row in [&items[4], &items[5]].map(|r| r.as_ref().unwrap_err()) {
        assert_eq!((row.stage, row.shard.as_str()), (Stage::Read, "shard-00001"));
        assert!(row.message.contains(&server.url("val/shard-00001.tar")), "{}", row.message);
    }
}
