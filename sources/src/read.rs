//! Reading a shard as samples: one file per entry for the folder layouts, a streamed tar for
//! WebDataset shards. Either way a reader yields exactly `count` items in key order; whatever
//! cannot be read becomes an error row for that key, never a missing item. A tar member the index
//! does not list (or an earlier key's, again) means the tar is not the one the index describes:
//! every key not yet yielded when it is met fails, naming it, so it neither vanishes nor yields twice.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use types::{BoxXyxy, ErrorRow, Sample, Stage};

use crate::fetch::Fetcher;
use crate::index::{sample_digest, split_member_name, SampleMeta, CLASS_EXT, IMAGE_EXT, INDEX_FILE, META_EXT};
use crate::location::Location;
use crate::{read_sample, Entry, Shard, ShardSource, TarShard};

/// A member larger than this is refused rather than allocated (ImageNet val's largest is ~15 MB).
const MAX_MEMBER_BYTES: u64 = 256 * 1024 * 1024;
/// Local tar files are read in blocks of this size.
const LOCAL_READ_BYTES: usize = 256 * 1024;

/// Image member extensions accepted from third-party shards; `jpg` is what `write_shards` writes.
const IMAGE_EXTS: [&str; 3] = [IMAGE_EXT, "jpeg", "png"];

impl Shard {
    /// Items its reader yields, known before reading (the graph cuts batches from it).
    pub fn count(&self) -> usize {
        match &self.source {
            ShardSource::Files(entries) => entries.len(),
            ShardSource::Tar(tar) => tar.keys.len(),
        }
    }

    /// Starts reading. Never fails: a shard that cannot be opened yields an error row per key.
    pub fn open(&self, fetch: &Fetcher) -> ShardReader {
        let inner = match &self.source {
            ShardSource::Files(entries) => {
                Inner::Files { shard: self.name.clone(), entries: entries.clone().into_iter() }
            }
            ShardSource::Tar(tar) => Inner::Tar(TarReader::open(&self.name, tar.clone(), fetch)),
        };
        ShardReader { inner }
    }

    /// Reads only the items of `keys` (keys the shard lacks are not yielded), in shard order, each
    /// as [`Shard::open`] would: a folder shard reads just their files, and a tar shard stops
    /// reading (and downloading) after the last of them. For re-reading a few images of a shard.
    pub fn open_only(&self, keys: &HashSet<String>, fetch: &Fetcher) -> impl Iterator<Item = Result<Sample, ErrorRow>> {
        let (mut reader, mut left) = match &self.source {
            ShardSource::Files(entries) => {
                let entries: Vec<Entry> = entries.iter().filter(|e| keys.contains(&e.image_id)).cloned().collect();
                let left = entries.len();
                (ShardReader { inner: Inner::Files { shard: self.name.clone(), entries: entries.into_iter() } }, left)
            }
            ShardSource::Tar(tar) => (self.open(fetch), tar.keys.iter().filter(|k| keys.contains(*k)).count()),
        };
        let keys = keys.clone();
        std::iter::from_fn(move || {
            while left > 0 {
                let item = reader.next()?;
                if keys.contains(item_id(&item)) {
                    left -= 1;
                    return Some(item);
                }
            }
            None
        })
    }
}

/// The image id of a reader's item, read or failed: the key it was listed under.
pub fn item_id(item: &Result<Sample, ErrorRow>) -> &str {
    match item {
        Ok(sample) => &sample.image_id,
        Err(row) => &row.image_id,
    }
}

/// `Iterator<Item = Result<Sample, ErrorRow>>` over one shard, exactly `count` items.
pub struct ShardReader {
    inner: Inner,
}

enum Inner {
    Files { shard: String, entries: std::vec::IntoIter<Entry> },
    Tar(TarReader),
}

impl Iterator for ShardReader {
    type Item = Result<Sample, ErrorRow>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Files { shard, entries } => entries.next().map(|entry| read_sample(&entry, shard)),
            Inner::Tar(tar) => tar.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.inner {
            Inner::Files { entries, .. } => entries.len(),
            Inner::Tar(tar) => tar.listing.keys.len() - tar.next_key,
        };
        (left, Some(left))
    }
}

/// One file of the tar, as the parsing thread hands it over.
struct Member {
    name: String,
    data: Vec<u8>,
}

/// Outcome of the parsing thread for one member: the member, or why the tar stops here.
type MemberResult = Result<Member, String>;

/// Why a key could not be read.
enum Failure {
    /// This sample is bad; the stream goes on.
    Sample(String),
    /// The tar cannot be read past this point: this key and every later one fail.
    Stream(String),
}

struct TarReader {
    shard: String,
    listing: Arc<TarShard>,
    /// Position of each key in `listing.keys`, to tell a missing sample from a foreign member.
    position: HashMap<String, usize>,
    next_key: usize,
    members: Option<Receiver<MemberResult>>,
    /// A member read ahead that belongs to a later key.
    pending: Option<Member>,
    /// Set once the stream broke; every key left fails with it.
    broken: Option<String>,
}

impl TarReader {
    fn open(shard: &str, listing: Arc<TarShard>, fetch: &Fetcher) -> TarReader {
        let position = listing.keys.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        let mut reader =
            TarReader { shard: shard.into(), listing, position, next_key: 0, members: None, pending: None, broken: None };
        // Error-only shards have no tar worth opening.
        if reader.listing.keys.iter().all(|k| reader.listing.errors.contains_key(k)) {
            return reader;
        }
        match open_source(&reader.listing, fetch).and_then(|source| spawn_parser(shard, source)) {
            Ok(members) => reader.members = Some(members),
            Err(message) => reader.broken = Some(message),
        }
        reader
    }

    fn next(&mut self) -> Option<Result<Sample, ErrorRow>> {
        let Some(key) = self.listing.keys.get(self.next_key).cloned() else {
            // Done: dropping the receiver stops the parser and the download behind it.
            self.members = None;
            return None;
        };
        self.next_key += 1;
        if let Some(listed) = self.listing.errors.get(&key) {
            let stage = crate::index::stage_from_str(&listed.stage).expect("validated with the index");
            return Some(Err(ErrorRow::new(&key, &self.shard, stage, listed.message.clone())));
        }
        if let Some(why) = &self.broken {
            return Some(Err(self.error(&key, format!("{why}; `{key}` not read"))));
        }
        Some(match self.read_sample(&key) {
            Ok(sample) => Ok(sample),
            Err(Failure::Sample(message)) => Err(self.error(&key, message)),
            Err(Failure::Stream(message)) => {
                let row = self.error(&key, message.clone());
                self.broken = Some(message);
                Err(row)
            }
        })
    }

    fn error(&self, key: &str, message: String) -> ErrorRow {
        ErrorRow::new(key, &self.shard, Stage::Read, format!("shard {}: {message}", self.shard))
    }

    fn next_member(&mut self) -> Result<Option<Member>, Failure> {
        if let Some(member) = self.pending.take() {
            return Ok(Some(member));
        }
        let Some(members) = &self.members else { return Ok(None) };
        match members.recv() {
            Ok(Ok(member)) => Ok(Some(member)),
            Ok(Err(message)) => Err(Failure::Stream(message)),
            Err(_) => Ok(None), // the parser finished the archive
        }
    }

    /// Gathers the consecutive members of `key` and checks them against the index.
    fn read_sample(&mut self, key: &str) -> Result<Sample, Failure> {
        let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let member = match self.next_member() {
                Ok(Some(member)) => member,
                Ok(None) if parts.is_empty() => {
                    return Err(Failure::Stream(format!("the tar ends before `{key}` (truncated?)")));
                }
                Ok(None) => break,
                // Looking past a whole sample hit the break: the sample stands, later keys fail.
                Err(Failure::Stream(why)) if !parts.is_empty() => {
                    self.broken = Some(why);
                    break;
                }
                Err(failure) => return Err(failure),
            };
            let split = split_member_name(&member.name);
            if let Some((_, ext)) = split.filter(|(member_key, _)| *member_key == key) {
                parts.push((ext.to_string(), member.data));
                continue;
            }
            if !parts.is_empty() && self.may_follow(split.map(|(member_key, _)| member_key)) {
                self.pending = Some(member); // the next sample begins
                break;
            }
            // From here the member is foreign to the index. `key` is not yielded yet, so it falls
            // with every later key: the tar is not the one the index describes.
            let Some((member_key, _)) = split else {
                let why = format!("member `{}` is not a plain `key.ext` name: rejected", member.name.escape_debug());
                return Err(Failure::Stream(why));
            };
            if !parts.is_empty() {
                return Err(Failure::Stream(format!(
                    "member `{}` follows `{key}` but is not a later key of the index: the tar does not match {INDEX_FILE}",
                    member.name
                )));
            }
            return match self.position.get(member_key) {
                // A later key: this sample is missing, the stream is fine.
                Some(&at) if at >= self.next_key => {
                    self.pending = Some(member);
                    Err(Failure::Sample(format!("`{key}` is missing from the tar")))
                }
                _ => Err(Failure::Stream(format!(
                    "member `{}` is not the next key of the index (expected `{key}`)",
                    member.name
                ))),
            };
        }
        self.check_sample(key, parts).map_err(Failure::Sample)
    }

    /// Whether a member of `member_key` (`None`: not a plain name) may come after the sample just
    /// read: a later key of the index (keys between may be listed errors or missing), or anything
    /// past the last key of a shard that `limit` cut, which is not ours to judge. An unlisted
    /// key, or an earlier one again, may not.
    fn may_follow(&self, member_key: Option<&str>) -> bool {
        let past_the_cut = !self.listing.complete && self.next_key == self.listing.keys.len();
        past_the_cut || member_key.and_then(|k| self.position.get(k)).is_some_and(|&at| at >= self.next_key)
    }

    fn check_sample(&self, key: &str, parts: Vec<(String, Vec<u8>)>) -> Result<Sample, String> {
        let mut image = None;
        let mut class = None;
        let mut meta = None;
        for (ext, data) in parts {
            let slot = match ext.as_str() {
                e if IMAGE_EXTS.contains(&e) => &mut image,
                CLASS_EXT => &mut class,
                META_EXT => &mut meta,
                _ => continue, // other WebDataset members are not ours to judge
            };
            if slot.replace(data).is_some() {
                return Err(format!("`{key}` has two `.{ext}`-kind members"));
            }
        }
        let image = image.ok_or_else(|| format!("`{key}` has no image member (.{IMAGE_EXT})"))?;
        let class = class.ok_or_else(|| format!("`{key}` has no .{CLASS_EXT} member"))?;
        if let Some(expected) = self.listing.sample_sha256.get(key) {
            let actual = sample_digest(&image, &class, meta.as_deref().unwrap_or_default());
            if &actual != expected {
                return Err(format!("`{key}` does not match its sha256 in the index (corrupted)"));
            }
        }
        let label = std::str::from_utf8(&class)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|c| *c >= 0)
            .ok_or_else(|| format!("`{key}.{CLASS_EXT}` is not a class index"))?;
        let boxes = match meta {
            None => Vec::new(),
            Some(json) => serde_json::from_slice::<SampleMeta>(&json)
                .map_err(|e| format!("`{key}.{META_EXT}` does not parse: {e}"))?
                .boxes
                .into_iter()
                .map(|[x0, y0, x1, y1]| BoxXyxy::new(x0, y0, x1, y1))
                .collect(),
        };
        Ok(Sample { image_id: key.into(), shard: self.shard.clone(), label, boxes, bytes: image })
    }
}

/// The tar's bytes, local or downloading, cut off with an error where the index says it is longer.
fn open_source(listing: &TarShard, fetch: &Fetcher) -> Result<Box<dyn Read + Send>, String> {
    let inner: Box<dyn Read + Send> = match &listing.location {
        Location::Local(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            Box::new(BufReader::with_capacity(LOCAL_READ_BYTES, file))
        }
        Location::Url(url) => Box::new(fetch.stream(url).map_err(|e| e.to_string())?),
    };
    Ok(Box::new(LengthChecked { inner, expected: listing.bytes, seen: 0, what: listing.location.to_string() }))
}

/// Turns an early end of file into an error naming the file and how much of it arrived.
struct LengthChecked {
    inner: Box<dyn Read + Send>,
    expected: u64,
    seen: u64,
    what: String,
}

impl Read for LengthChecked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.seen < self.expected {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends after {} of {} bytes (truncated)", self.what, self.seen, self.expected),
            ));
        }
        self.seen += n as u64;
        Ok(n)
    }
}

/// Parses the tar on its own thread (the `tar` crate's entries borrow the archive, so they cannot
/// live in an iterator struct) and hands members over one at a time: memory stays at about one
/// sample, and parsing overlaps the caller's work.
fn spawn_parser(shard: &str, source: Box<dyn Read + Send>) -> Result<Receiver<MemberResult>, String> {
    let (tx, rx) = sync_channel(1);
    std::thread::Builder::new()
        .name(format!("qcam-tar-{shard}"))
        .spawn(move || parse_members(source, &tx))
        .map_err(|e| format!("cannot start the tar reader thread: {e}"))?;
    Ok(rx)
}

fn parse_members(source: Box<dyn Read + Send>, tx: &SyncSender<MemberResult>) {
    let mut archive = tar::Archive::new(source);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            let _ = tx.send(Err(format!("tar: {e}")));
            return;
        }
    };
    for entry in entries {
        let member = entry.map_err(|e| format!("tar: {e}")).and_then(|entry| read_member(entry));
        let failed = member.is_err();
        match member {
            Ok(None) => continue,
            Ok(Some(member)) => {
                // A send error means the reader is gone: stop reading.
                if tx.send(Ok(member)).is_err() {
                    return;
                }
            }
            Err(message) => {
                let _ = tx.send(Err(message));
            }
        }
        if failed {
            return;
        }
    }
}

/// A regular file's name and bytes; `None` for directories. Names are only ever compared, never
/// used as paths.
fn read_member<R: Read>(mut entry: tar::Entry<'_, R>) -> Result<Option<Member>, String> {
    let name = String::from_utf8(entry.path_bytes().into_owned())
        .map_err(|e| format!("member name {:?} is not UTF-8: rejected", String::from_utf8_lossy(e.as_bytes())))?;
    let kind = entry.header().entry_type();
    if kind.is_dir() {
        return Ok(None);
    }
    if !(kind.is_file() || kind.is_contiguous()) {
        return Err(format!("member `{}` is a {kind:?} entry, not a file: rejected", name.escape_debug()));
    }
    let size = entry.size();
    if size > MAX_MEMBER_BYTES {
        return Err(format!("member `{}` claims {size} bytes, over the {MAX_MEMBER_BYTES}-byte limit", name.escape_debug()));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut data).map_err(|e| format!("member `{}`: {e}", name.escape_debug()))?;
    if data.len() as u64 != size {
        return Err(format!("member `{}` is cut short: {} of {size} bytes (truncated)", name.escape_debug(), data.len()));
    }
    Ok(Some(Member { name, data }))
}
