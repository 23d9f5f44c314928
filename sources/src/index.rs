//! `index.json`, the table of contents written next to WebDataset tar shards.
//!
//! Every image of the source dataset has a key in exactly one shard, in id order. A packed image
//! has a per-sample digest (so a corrupted sample is caught as it streams, without buffering the
//! shard); an image whose label (or file) was unusable in the source is not packed but listed
//! under `errors` with its stage and message, so a run over shards reports it exactly as a run
//! over the folder does.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;

use types::Stage;
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Layout;

pub const INDEX_FILE: &str = "index.json";
pub const INDEX_FORMAT: &str = "qcam-webdataset";
pub const INDEX_VERSION: u32 = 1;

/// Member extensions of one sample.
pub const IMAGE_EXT: &str = "jpg";
pub const CLASS_EXT: &str = "cls";
pub const META_EXT: &str = "json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardIndex {
    /// Always [`INDEX_FORMAT`]; tells this file from any other `index.json`.
    pub format: String,
    pub version: u32,
    /// The layout the images were packed from.
    pub source_layout: Layout,
    /// Keys over all shards, packed or listed as errors.
    pub total: usize,
    pub shards: Vec<ShardListing>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardListing {
    /// Shard name as it appears in output rows and part files, e.g. `shard-00000`.
    pub name: String,
    /// Tar file name in the index's folder, e.g. `shard-00000.tar`.
    pub file: String,
    /// Number of keys, `keys.len()`: what a reader of this shard yields.
    pub count: usize,
    /// Size of the tar file.
    pub bytes: u64,
    /// SHA-256 of the whole tar file (hex), for `sha256sum`-style checks of a copy.
    pub sha256: String,
    /// Every key of the shard in id order, packed or not.
    pub keys: Vec<String>,
    /// Per packed key, SHA-256 (hex) of its members, see [`sample_digest`].
    #[serde(deserialize_with = "unique_keys")]
    pub sample_sha256: BTreeMap<String, String>,
    /// Keys not packed because the source could not provide them.
    #[serde(default, deserialize_with = "unique_keys", skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, ListedError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListedError {
    /// `label` or `read`, as in the error rows of a folder run.
    pub stage: String,
    pub message: String,
}

/// The `.json` member of a sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// Inclusive pixel corners `[x0, y0, x1, y1]` in the frame of the encoded image.
    pub boxes: Vec<[i32; 4]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// Keys and shard names become member names and output file names: plain `[A-Za-z0-9_.-]`,
/// not starting with `.` (which rules out `.` and `..`), so they can never address a path.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `{key}.{ext}` → `(key, ext)`, splitting at the last dot (keys may hold dots, extensions don't).
pub fn split_member_name(name: &str) -> Option<(&str, &str)> {
    let (key, ext) = name.rsplit_once('.')?;
    let ext_ok = !ext.is_empty() && ext.chars().all(|c| c.is_ascii_alphanumeric());
    (ext_ok && is_plain_name(key)).then_some((key, ext))
}

/// Digest of one sample: each member's length (u64 LE) then bytes, image, class, meta. Lengths
/// make the split between members part of what is hashed.
pub fn sample_digest(image: &[u8], class: &[u8], meta: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [image, class, meta] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

pub(crate) fn stage_from_str(name: &str) -> Option<Stage> {
    [Stage::Label, Stage::Read, Stage::Decode, Stage::Infer].into_iter().find(|s| s.as_str() == name)
}

/// A JSON object as a map, refusing a key that appears twice: a plain map would keep the last
/// value without a word, hiding which digest or error the index meant.
fn unique_keys<'de, D: Deserializer<'de>, V: Deserialize<'de>>(deserializer: D) -> Result<BTreeMap<String, V>, D::Error> {
    struct Unique<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object with unique keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, V>()? {
                if out.contains_key(&key) {
                    return Err(A::Error::custom(format!("key `{key}` appears twice in one JSON object")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique(PhantomData))
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl ShardIndex {
    /// Checks everything a reader relies on; the message names the shard and key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != INDEX_FORMAT {
            return Err(format!("`format` is `{}`, expected `{INDEX_FORMAT}`", self.format));
        }
        if self.version != INDEX_VERSION {
            return Err(format!("`version` {} is not supported (this build reads {INDEX_VERSION})", self.version));
        }
        let mut seen_keys = HashSet::new();
        let mut seen_names = HashSet::new();
        let mut shard_of_file: HashMap<&str, &str> = HashMap::new();
        for shard in &self.shards {
            let at = |message: String| format!("shard `{}`: {message}", shard.name);
            if !is_plain_name(&shard.name) || !seen_names.insert(shard.name.as_str()) {
                return Err(at("name is not a plain, unique name ([A-Za-z0-9_.-])".into()));
            }
            if !is_plain_name(&shard.file) || !shard.file.ends_with(".tar") {
                return Err(at(format!("`file` `{}` is not a plain `.tar` file name", shard.file)));
            }
            // Two shards over one tar: at best every key of one fails, at worst one tar is read twice.
            if let Some(other) = shard_of_file.insert(&shard.file, &shard.name) {
                return Err(at(format!("`file` `{}` is also the file of shard `{other}`", shard.file)));
            }
            if shard.count != shard.keys.len() {
                return Err(at(format!("`count` {} but {} keys", shard.count, shard.keys.len())));
            }
            if !is_sha256_hex(&shard.sha256) {
                return Err(at("`sha256` is not 64 lowercase hex digits".into()));
            }
            for key in &shard.keys {
                if !is_plain_name(key) {
                    return Err(at(format!("key `{key}` is not a plain name ([A-Za-z0-9_.-], no leading dot)")));
                }
                if !seen_keys.insert(key.as_str()) {
                    return Err(at(format!("key `{key}` is listed twice")));
                }
                match (shard.sample_sha256.get(key), shard.errors.get(key)) {
                    (Some(digest), None) if is_sha256_hex(digest) => {}
                    (Some(_), None) => return Err(at(format!("`sample_sha256` of `{key}` is not a SHA-256"))),
                    (None, Some(error)) if stage_from_str(&error.stage).is_some() => {}
                    (None, Some(error)) => return Err(at(format!("error of `{key}` has unknown stage `{}`", error.stage))),
                    (Some(_), Some(_)) => return Err(at(format!("key `{key}` is both packed and an error"))),
                    (None, None) => return Err(at(format!("key `{key}` is neither in `sample_sha256` nor in `errors`"))),
                }
            }
            let listed = shard.sample_sha256.len() + shard.errors.len();
            if listed != shard.keys.len() {
                return Err(at(format!("{listed} digests and errors for {} keys", shard.keys.len())));
            }
        }
        let total: usize = self.shards.iter().map(|s| s.count).sum();
        if total != self.total {
            return Err(format!("`total` {} but the shards hold {total} keys", self.total));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_exclude_paths() {
        assert!(is_plain_name("ILSVRC2012_val_00000001"));
        assert!(is_plain_name("a.b-c_d"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "a\\b", "é"] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert_eq!(split_member_name("a.b.jpg"), Some(("a.b", "jpg")));
        assert_eq!(split_member_name("../x.jpg"), None);
        assert_eq!(split_member_name("x."), None);
        assert_eq!(split_member_name("noext"), None);
    }

    #[test]
    fn digest_depends_on_member_split() {
        assert_ne!(sample_digest(b"ab", b"c", b""), sample_digest(b"a", b"bc", b""));
        assert_eq!(sample_digest(b"x", b"1", b"{}").len(), 64);
    }

    #[test]
    fn stages_round_trip() {
        assert_eq!(stage_from_str("label"), Some(Stage::Label));
        assert_eq!(stage_from_str("read"), Some(Stage::Read));
        assert_eq!(stage_from_str("shard"), None);
    }
}
