//! Downloads from object stores for the synchronous readers: a tokio runtime and the store
//! clients, with each download bridged to `std::io::Read` by a bounded channel, so memory per
//! download stays at [`PREFETCH_BYTES`] however large the shard.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::sync::mpsc;
use url::Url;

use crate::location::{build_store, store_key, Location};
use crate::{DataError, Shard, ShardSource};

/// Downloads are handed over in blocks of this size...
const BLOCK_BYTES: usize = 256 * 1024;
/// ...and at most this many blocks wait in the channel: a download, prefetched or streaming,
/// runs this far ahead of the reader and then waits (TCP back-pressure does the rest).
const QUEUE_BLOCKS: usize = 16;
/// Bytes a download may hold ahead of its reader (4 MiB).
pub const PREFETCH_BYTES: usize = BLOCK_BYTES * QUEUE_BLOCKS;

type Blocks = mpsc::Receiver<io::Result<Bytes>>;

/// Owns the async runtime and the object-store clients. One per process is enough (it is
/// `Send + Sync`; share it with an `Arc`), one per worker is fine too.
pub struct Fetcher {
    runtime: tokio::runtime::Runtime,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    /// Downloads started by [`Fetcher::prefetch`] and not yet opened, by URL.
    prefetched: Mutex<HashMap<Url, Blocks>>,
}

impl Fetcher {
    pub fn new() -> Result<Fetcher, DataError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1) // downloads wait on the network, not the CPU
            .thread_name("qcam-fetch")
            .enable_all()
            .build()
            .map_err(|e| DataError::Fetch { url: "(runtime)".into(), message: format!("cannot start tokio: {e}") })?;
        Ok(Fetcher { runtime, stores: Mutex::default(), prefetched: Mutex::default() })
    }

    /// Starts downloading `shard` so that its `open` finds the first [`PREFETCH_BYTES`] waiting.
    /// Local and folder shards need nothing (the page cache does this); a shard already being
    /// prefetched is left alone. Failures surface when the shard is opened.
    pub fn prefetch(&self, shard: &Shard) {
        let ShardSource::Tar(tar) = &shard.source else { return };
        let Location::Url(url) = &tar.location else { return };
        let mut prefetched = self.prefetched.lock().expect("prefetch map poisoned");
        if prefetched.contains_key(url) {
            return;
        }
        if let Ok(blocks) = self.start_download(url) {
            prefetched.insert(url.clone(), blocks);
        }
    }

    /// A reader over the object at `url`, taking over its prefetched download if there is one.
    pub(crate) fn stream(&self, url: &Url) -> Result<ChannelReader, DataError> {
        let waiting = self.prefetched.lock().expect("prefetch map poisoned").remove(url);
        let blocks = match waiting {
            Some(blocks) => blocks,
            None => self.start_download(url)?,
        };
        Ok(ChannelReader { blocks, current: Bytes::new() })
    }

    /// The whole object at `url`; for small files such as `index.json`.
    pub(crate) fn get_all(&self, url: &Url) -> Result<Bytes, DataError> {
        let (store, path) = self.store(url)?;
        let fail = |e: object_store::Error| DataError::Fetch { url: url.to_string(), message: e.to_string() };
        self.runtime.block_on(async move { store.get(&path).await.map_err(fail)?.bytes().await.map_err(fail) })
    }

    fn store(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), DataError> {
        let (built, path) = build_store(url)?;
        let mut stores = self.stores.lock().expect("store map poisoned");
        // Reuse the client (and its connection pool) of an earlier URL on the same host/bucket.
        let store = stores.entry(store_key(url)).or_insert(built).clone();
        Ok((store, path))
    }

    fn start_download(&self, url: &Url) -> Result<Blocks, DataError> {
        let (store, path) = self.store(url)?;
        let (tx, rx) = mpsc::channel(QUEUE_BLOCKS);
        let label = url.to_string();
        self.runtime.spawn(async move {
            let failed = |e: object_store::Error| io::Error::other(format!("{label}: {e}"));
            let mut chunks = match store.get(&path).await {
                Ok(result) => result.into_stream(),
                Err(e) => {
                    let _ = tx.send(Err(failed(e))).await;
                    return;
                }
            };
            let mut block = BytesMut::with_capacity(BLOCK_BYTES);
            while let Some(chunk) = chunks.next().await {
                match chunk {
                    Ok(chunk) => {
                        block.extend_from_slice(&chunk);
                        // A send error means the reader is gone: stop downloading.
                        if block.len() >= BLOCK_BYTES && tx.send(Ok(block.split().freeze())).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(failed(e))).await;
                        return;
                    }
                }
            }
            if !block.is_empty() {
                let _ = tx.send(Ok(block.freeze())).await;
            }
        });
        Ok(rx)
    }
}

/// The synchronous end of a download. Must not be read from inside the fetcher's runtime (the
/// tar reader runs on its own thread).
pub(crate) struct ChannelReader {
    blocks: Blocks,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.blocks.blocking_recv() {
                Some(Ok(block)) => self.current = block,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
