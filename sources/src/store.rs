//! A folder in an object store (`s3://bucket/prefix`, `gs://bucket/prefix`) with the handful of
//! blocking operations a run folder needs: whole-object reads and writes, a conditional create,
//! copy-and-delete renames, listing and removal by prefix. The client is the one [`Location`]
//! reading uses ([`build_store`]), so credentials come from the same environment variables.
//!
//! Every call blocks the calling thread on a process-wide tokio runtime; never call it from inside
//! a tokio runtime. Errors are `std::io::Error`s (not found and already exists keep their kinds) for
//! the caller to attach the object's URL to ([`StoreFolder::url_of`]).

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use url::Url;

use crate::location::build_store;
use crate::DataError;

/// The schemes a run folder may use: stores that can be written.
pub const WRITABLE_SCHEMES: [&str; 2] = ["s3", "gs"];

/// A prefix in an object store, used as a folder. Cheap to clone (the client is shared).
#[derive(Clone, Debug)]
pub struct StoreFolder {
    /// The folder's URL, ending in `/`.
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // Requests wait on the network, not the CPU: two threads keep a heartbeat and a write moving.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("qcam-store").enable_all().build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

fn block_on<T>(f: impl std::future::Future<Output = object_store::Result<T>>) -> io::Result<T> {
    runtime()?.block_on(f).map_err(to_io)
}

fn to_io(e: object_store::Error) -> io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => io::ErrorKind::AlreadyExists,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}

/// The prefix to list under `key`: none at the bucket's root (a prefix of `/` would match nothing).
fn under(key: &ObjectPath) -> Option<&ObjectPath> {
    (!key.as_ref().is_empty()).then_some(key)
}

/// `Ok(None)` for a missing object.
fn found<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other.map(Some),
    }
}

impl StoreFolder {
    /// The folder at `url` (`s3://` or `gs://`). Touches no network.
    pub fn open(url: &Url) -> Result<StoreFolder, DataError> {
        if !WRITABLE_SCHEMES.contains(&url.scheme()) {
            return Err(DataError::Url {
                url: url.to_string(),
                message: format!("a run folder cannot live at a `{}` URL (s3 and gs can hold one)", url.scheme()),
            });
        }
        let mut url = url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let (store, prefix) = build_store(&url)?;
        Ok(StoreFolder { url, store, prefix })
    }

    /// The folder's URL, ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL of entry `rel` (a `/`-separated path inside the folder), for messages.
    pub fn url_of(&self, rel: &str) -> String {
        format!("{}{}", self.url, rel.trim_start_matches('/'))
    }

    /// The sub-folder `rel`.
    pub fn child(&self, rel: &str) -> StoreFolder {
        let url = Url::parse(&format!("{}/", self.url_of(rel).trim_end_matches('/'))).unwrap_or_else(|_| self.url.clone());
        StoreFolder { url, store: self.store.clone(), prefix: self.key(rel) }
    }

    fn key(&self, rel: &str) -> ObjectPath {
        rel.split('/').filter(|s| !s.is_empty()).fold(self.prefix.clone(), |p, part| p.join(part))
    }

    /// The object `rel`, whole, or `None` when there is none.
    pub fn get(&self, rel: &str) -> io::Result<Option<bytes::Bytes>> {
        let key = self.key(rel);
        found(block_on(async { self.store.get(&key).await?.bytes().await }))
    }

    /// Writes `rel` as one object: readers see the old object or all of the new one, never part.
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> io::Result<()> {
        block_on(self.store.put(&self.key(rel), PutPayload::from(bytes))).map(drop)
    }

    /// Creates `rel` unless it exists; `false` when it does. Atomic where the store has conditional
    /// puts (S3's `If-None-Match`, GCS's generation match). A store without them is checked first
    /// and written after, so two creators racing within one round trip could both succeed.
    pub fn create(&self, rel: &str, bytes: Vec<u8>) -> io::Result<bool> {
        let key = self.key(rel);
        let payload = PutPayload::from(bytes);
        match runtime()?.block_on(self.store.put_opts(&key, payload.clone(), PutMode::Create.into())) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                if found(block_on(self.store.head(&key)))?.is_some() {
                    return Ok(false);
                }
                block_on(self.store.put(&key, payload)).map(|_| true)
            }
            Err(e) => Err(to_io(e)),
        }
    }

    /// How long ago `rel` was last written (by the store's clock against ours), or `None`.
    pub fn age(&self, rel: &str) -> io::Result<Option<Duration>> {
        let Some(meta) = found(block_on(self.store.head(&self.key(rel))))? else { return Ok(None) };
        let written = SystemTime::UNIX_EPOCH + Duration::from_millis(meta.last_modified.timestamp_millis().max(0) as u64);
        Ok(Some(SystemTime::now().duration_since(written).unwrap_or_default()))
    }

    /// Moves `from` to `to`: a copy, then the source's removal. Not atomic: a crash in between
    /// leaves both, which a caller that renames to finish (a commit) simply does again.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (self.key(from), self.key(to));
        block_on(async {
            self.store.copy(&from, &to).await?;
            self.store.delete(&from).await
        })
    }

    /// Removes the object `rel` and every object under `rel/`; nothing there is not an error.
    pub fn remove(&self, rel: &str) -> io::Result<()> {
        let key = self.key(rel);
        block_on(async {
            if !key.as_ref().is_empty() {
                match self.store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let under: Vec<ObjectPath> = self.store.list(under(&key)).map_ok(|m| m.location).try_collect().await?;
            let paths = futures::stream::iter(under.into_iter().map(Ok)).boxed();
            self.store.delete_stream(paths).try_collect::<Vec<_>>().await.map(drop)
        })
    }

    /// The names directly inside `rel` (objects and sub-folders), unsorted; none when it is empty.
    pub fn list(&self, rel: &str) -> io::Result<Vec<String>> {
        let key = self.key(rel);
        let listed = block_on(self.store.list_with_delimiter(under(&key)))?;
        let folders = listed.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string));
        let objects = listed.objects.iter().filter_map(|m| m.location.filename().map(str::to_string));
        Ok(folders.chain(objects).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_named_by_url_and_keyed_under_the_prefix() {
        let folder = StoreFolder::open(&Url::parse("s3://bucket/runs/a").unwrap()).unwrap();
        assert_eq!(folder.url().as_str(), "s3://bucket/runs/a/");
        assert_eq!(folder.url_of("done/val-00000.json"), "s3://bucket/runs/a/done/val-00000.json");
        assert_eq!(folder.key(".staging/p/0123/perturbation/part-x.parquet").as_ref(), "runs/a/.staging/p/0123/perturbation/part-x.parquet");
        let staging = folder.child(".staging/p");
        assert_eq!(staging.url_of("x"), "s3://bucket/runs/a/.staging/p/x");
        assert_eq!(staging.key("x").as_ref(), "runs/a/.staging/p/x");
        let err = StoreFolder::open(&Url::parse("https://example.org/runs").unwrap()).unwrap_err().to_string();
        assert!(err.contains("cannot live at a `https` URL"), "{err}");
    }
}
