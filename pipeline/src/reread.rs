//! Re-reading the images deletion/insertion needs, long after phase 1 let them go. A job names one
//! image, and a process's jobs are taken shard by shard (the pool keeps them in that order), so
//! the process reads a shard once for every image its queued jobs want from it and keeps those
//! samples until a job of another shard comes: one read per shard, not per job, and the memory
//! of one shard's wanted samples. A job that came too late for its shard's read reads it again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sources::{Fetcher, Shard};
use types::{ErrorRow, Sample};

/// A read's items by image id.
type Samples = HashMap<String, Result<Sample, ErrorRow>>;

/// The samples of the last shard read, shared by the workers of one process.
#[derive(Default)]
pub struct Reread {
    last: Mutex<Option<(String, Samples)>>,
}

impl Reread {
    /// Sample `image_id` of `shard`, or why it cannot be read: from the last read when that has
    /// it, else from a new read of `shard` for it and the images `wanted` names. Workers wanting
    /// a shard being read wait for that read rather than start another.
    pub fn sample(&self, shard: &Shard, image_id: &str, wanted: impl FnOnce() -> HashSet<String>, fetch: &Fetcher) -> Result<Sample, String> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let held = last.as_ref().filter(|(name, _)| *name == shard.name).and_then(|(_, samples)| samples.get(image_id));
        let item = match held {
            Some(item) => item.clone(),
            None => {
                let mut keys = wanted();
                keys.insert(image_id.to_string());
                let samples: Samples = shard
                    .open_only(&keys, fetch)
                    .map(|item| (sources::item_id(&item).to_string(), item))
                    .collect();
                let item = samples.get(image_id).cloned();
                *last = Some((shard.name.clone(), samples));
                item.ok_or("not in its shard any more")?
            }
        };
        item.map_err(|row| row.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder shard of `n` tiny files `img{i}` (bytes `i`), in a temp folder.
    fn folder_shard(n: usize) -> (tempfile::TempDir, Shard) {
        let dir = tempfile::tempdir().unwrap();
        let entries = (0..n)
            .map(|i| {
                let path = dir.path().join(format!("img{i}.jpg"));
                std::fs::write(&path, [i as u8]).unwrap();
                sources::Entry { image_id: format!("img{i}"), file: Ok(path), label: Ok(i as i32), boxes: Vec::new() }
            })
            .collect();
        (dir, Shard { index: 0, name: "s0".into(), source: sources::ShardSource::Files(entries) })
    }

    #[test]
    fn one_read_serves_every_wanted_image_of_the_shard() {
        let (dir, shard) = folder_shard(4);
        let fetch = Fetcher::new().unwrap();
        let reread = Reread::default();
        let wanted = || HashSet::from(["img2".to_string(), "img3".to_string()]);
        assert_eq!(reread.sample(&shard, "img0", wanted, &fetch).unwrap().bytes, [0]);
        // The files are gone: what the first read wanted still comes, from it; the rest cannot.
        (0..4).for_each(|i| std::fs::remove_file(dir.path().join(format!("img{i}.jpg"))).unwrap());
        let sample = reread.sample(&shard, "img3", HashSet::new, &fetch).unwrap();
        assert_eq!((sample.image_id.as_str(), sample.bytes.as_slice(), sample.label), ("img3", &[3u8][..], 3));
        assert_eq!(reread.sample(&shard, "img2", HashSet::new, &fetch).unwrap().bytes, [2]);
        let why = reread.sample(&shard, "img1", HashSet::new, &fetch).unwrap_err();
        assert!(why.contains("img1.jpg"), "the reader's reason, naming the file: {why}");
        assert_eq!(reread.sample(&shard, "nope", HashSet::new, &fetch).unwrap_err(), "not in its shard any more");
    }
}
