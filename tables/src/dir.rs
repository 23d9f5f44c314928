//! A run folder: a local directory, or a prefix in an object store (`s3://bucket/runs/x`,
//! `gs://…`). Part files, the ledger's records, staging and the lock all go through [`RunDir`], so
//! one code path serves both. Entries are named by `/`-separated paths relative to the folder
//! (`done/val-00000.json`); every error names the entry's file or object URL.
//!
//! Locally a write goes through a temporary name and a rename, so a reader never sees half of it;
//! on a store a write is one PUT, which a store makes visible whole or not at all.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sources::StoreFolder;

use crate::TableError;

/// Where a run's tables live.
#[derive(Clone, Debug)]
pub enum RunDir {
    Local(PathBuf),
    Store(StoreFolder),
}

/// A local folder. A path written as a URL is not parsed here: use [`RunDir::parse`].
impl From<&Path> for RunDir {
    fn from(path: &Path) -> RunDir {
        RunDir::Local(path.to_path_buf())
    }
}

impl From<&PathBuf> for RunDir {
    fn from(path: &PathBuf) -> RunDir {
        RunDir::Local(path.clone())
    }
}

impl From<PathBuf> for RunDir {
    fn from(path: PathBuf) -> RunDir {
        RunDir::Local(path)
    }
}

impl From<&RunDir> for RunDir {
    fn from(dir: &RunDir) -> RunDir {
        dir.clone()
    }
}

impl fmt::Display for RunDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunDir::Local(path) => write!(f, "{}", path.display()),
            RunDir::Store(store) => write!(f, "{}", store.url()),
        }
    }
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other.map(Some),
    }
}

fn write_local(path: &Path, bytes: Vec<u8>) -> Result<(), TableError> {
    let parent = path.parent().expect("an entry lies in a folder");
    std::fs::create_dir_all(parent).map_err(|source| TableError::Io { path: parent.into(), source })?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|source| TableError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| TableError::Io { path: path.into(), source })
}

impl RunDir {
    /// `dir` as written in a job or on the command line: an `s3://` or `gs://` URL is a folder in
    /// that store (credentials from the environment, read on first use), anything else a path.
    pub fn parse(dir: &Path) -> Result<RunDir, TableError> {
        let invalid = |message: String| TableError::Io { path: dir.into(), source: io::Error::new(io::ErrorKind::InvalidInput, message) };
        match sources::Location::parse(dir).map_err(|e| invalid(e.to_string()))? {
            sources::Location::Local(path) => Ok(RunDir::Local(path)),
            sources::Location::Url(url) => StoreFolder::open(&url).map(RunDir::Store).map_err(|e| invalid(e.to_string())),
        }
    }

    pub fn is_store(&self) -> bool {
        matches!(self, RunDir::Store(_))
    }

    /// The folder on this machine's filesystem, if it is one.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            RunDir::Local(path) => Some(path),
            RunDir::Store(_) => None,
        }
    }

    /// The folder: its path, or its URL (ending in `/`).
    pub fn path(&self) -> PathBuf {
        match self {
            RunDir::Local(path) => path.clone(),
            RunDir::Store(store) => PathBuf::from(store.url().as_str()),
        }
    }

    /// Where entry `rel` is: its path, or its object's URL (as a path, the way `data.path` holds
    /// URLs). For messages, and for local file access.
    pub fn at(&self, rel: &str) -> PathBuf {
        match self {
            RunDir::Local(path) => path.join(rel),
            RunDir::Store(store) => PathBuf::from(store.url_of(rel)),
        }
    }

    /// The sub-folder `rel`.
    pub fn join(&self, rel: &str) -> RunDir {
        match self {
            RunDir::Local(path) => RunDir::Local(path.join(rel)),
            RunDir::Store(store) => RunDir::Store(store.child(rel)),
        }
    }

    fn fail(&self, rel: &str) -> impl FnOnce(io::Error) -> TableError + '_ {
        let path = self.at(rel);
        move |source| TableError::Io { path, source }
    }

    /// Whether the folder exists: on a store, whether anything is stored under it.
    pub fn exists(&self) -> Result<bool, TableError> {
        match self {
            RunDir::Local(path) => Ok(path.is_dir()),
            RunDir::Store(store) => store.list("").map(|names| !names.is_empty()).map_err(self.fail("")),
        }
    }

    /// Entry `rel`, whole, or `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, TableError> {
        let got = match self {
            RunDir::Local(path) => not_found_is_none(std::fs::read(path.join(rel))),
            RunDir::Store(store) => store.get(rel).map(|b| b.map(Vec::from)),
        };
        got.map_err(self.fail(rel))
    }

    /// Writes entry `rel` whole: locally through `<name>.tmp` and a rename, creating its folder; on a
    /// store as one object.
    pub fn write(&self, rel: &str, bytes: Vec<u8>) -> Result<(), TableError> {
        match self {
            RunDir::Local(dir) => write_local(&dir.join(rel), bytes),
            RunDir::Store(store) => store.put(rel, bytes).map_err(self.fail(rel)),
        }
    }

    /// Creates entry `rel` holding `bytes` unless it exists (then `false`). Locally `O_EXCL`; on a
    /// store a conditional put where the store has one ([`StoreFolder::create`] says what holds
    /// where it has not).
    pub fn create_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool, TableError> {
        let created = match self {
            RunDir::Local(dir) => {
                use std::io::Write;
                let path = dir.join(rel);
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => f.write_all(&bytes).map(|()| true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                    Err(e) => Err(e),
                }
            }
            RunDir::Store(store) => store.create(rel, bytes),
        };
        created.map_err(self.fail(rel))
    }

    /// Marks entry `rel` as written now (a heartbeat): locally its modification time; on a store,
    /// where objects cannot be touched, by writing `bytes` over it.
    pub fn touch(&self, rel: &str, bytes: &[u8]) -> Result<(), TableError> {
        let touched = match self {
            RunDir::Local(dir) => {
                std::fs::File::options().append(true).open(dir.join(rel)).and_then(|f| f.set_modified(std::time::SystemTime::now()))
            }
            RunDir::Store(store) => store.put(rel, bytes.to_vec()),
        };
        touched.map_err(self.fail(rel))
    }

    /// How long ago entry `rel` was last written, or `None` when it does not exist.
    pub fn age(&self, rel: &str) -> Result<Option<Duration>, TableError> {
        let age = match self {
            RunDir::Local(dir) => not_found_is_none(std::fs::metadata(dir.join(rel)).and_then(|m| m.modified()))
                .map(|t| t.map(|t| t.elapsed().unwrap_or_default())),
            RunDir::Store(store) => store.age(rel),
        };
        age.map_err(self.fail(rel))
    }

    /// Renames entry `from` to `to` (same folder level): locally a rename; on a store a copy and
    /// a delete (see [`StoreFolder::rename`]).
    pub fn rename(&self, from: &str, to: &str) -> Result<(), TableError> {
        let renamed = match self {
            RunDir::Local(dir) => std::fs::rename(dir.join(from), dir.join(to)),
            RunDir::Store(store) => store.rename(from, to),
        };
        renamed.map_err(self.fail(from))
    }

    /// Removes entry `rel`, a file or a folder with everything in it; one that is not there is
    /// not an error.
    pub fn remove(&self, rel: &str) -> Result<(), TableError> {
        let removed = match self {
            RunDir::Local(dir) => {
                let path = dir.join(rel);
                let r = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                not_found_is_none(r).map(drop)
            }
            RunDir::Store(store) => store.remove(rel),
        };
        removed.map_err(self.fail(rel))
    }

    /// The names directly inside folder `rel`, sorted; none when it does not exist.
    pub fn list(&self, rel: &str) -> Result<Vec<String>, TableError> {
        let listed = match self {
            RunDir::Local(dir) => not_found_is_none(std::fs::read_dir(dir.join(rel))).map(|read| {
                let entries = read.into_iter().flatten().filter_map(|e| e.ok());
                entries.map(|e| e.file_name().to_string_lossy().into_owned()).collect()
            }),
            RunDir::Store(store) => store.list(rel),
        };
        let mut names: Vec<String> = listed.map_err(self.fail(rel))?;
        names.sort();
        Ok(names)
    }
}
