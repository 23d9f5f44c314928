//! Where a dataset lives: a local folder or a URL (`http(s)://`, `s3://`, `gs://`), and the
//! object-store client that reads a URL.
//!
//! Credentials come from the standard environment variables, read when a store is built:
//! S3 uses `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`
//! (default `us-east-1`), `AWS_ENDPOINT` or `AWS_ENDPOINT_URL` (MinIO and other S3-compatible stores;
//! `AWS_ALLOW_HTTP=true` for one without TLS), falling back to
//! the instance/container metadata service; GCS uses `GOOGLE_SERVICE_ACCOUNT` /
//! `GOOGLE_APPLICATION_CREDENTIALS` (a service-account JSON file), then gcloud's application
//! default credentials, then the metadata service. HTTP(S) needs none.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore};
use url::Url;

use crate::DataError;

/// A dataset folder or a file in it, on disk or behind a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Url(Url),
}

/// True when `path` is written as a URL (`scheme://…`) rather than a filesystem path, so that
/// job files can leave it alone instead of resolving it against their folder.
pub use types::is_url;

impl Location {
    /// A URL with a supported scheme, or else a filesystem path taken as is.
    pub fn parse(path: &Path) -> Result<Location, DataError> {
        if !is_url(path) {
            return Ok(Location::Local(path.to_path_buf()));
        }
        let text = path.to_str().expect("is_url checked UTF-8");
        let url = Url::parse(text).map_err(|e| DataError::Url { url: text.into(), message: e.to_string() })?;
        match url.scheme() {
            "http" | "https" | "s3" | "gs" => Ok(Location::Url(url)),
            other => Err(DataError::Url {
                url: text.into(),
                message: format!("unsupported scheme `{other}` (http, https, s3 and gs are)"),
            }),
        }
    }

    /// The file `name` inside this folder. `name` is a plain file name (checked by the index),
    /// so this never leaves the folder.
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(dir) => Location::Local(dir.join(name)),
            Location::Url(dir) => {
                let mut dir = dir.clone();
                if !dir.path().ends_with('/') {
                    // `Url::join` replaces the last segment unless the base ends with a slash.
                    let path = format!("{}/", dir.path());
                    dir.set_path(&path);
                }
                Location::Url(dir.join(name).expect("a plain file name joins onto any base URL"))
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Url(url) => write!(f, "{url}"),
        }
    }
}

/// The store serving `url` (one per scheme + host/bucket) and the object's path inside it.
pub(crate) fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

/// Builds the client for `url`'s store. Touches no network: credentials are resolved on the first
/// request.
pub(crate) fn build_store(url: &Url) -> Result<(Arc<dyn ObjectStore>, ObjectPath), DataError> {
    let fail = |e: &dyn fmt::Display| DataError::Url { url: url.to_string(), message: e.to_string() };
    let object = ObjectPath::from_url_path(url.path()).map_err(|e| fail(&e))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "http" | "https" => {
            // The store's base is the origin: object paths carry the whole URL path, because the
            // HTTP client appends segments and a base path ending in `/` would double the slash.
            let origin = format!("{}/", store_key(url));
            let options = ClientOptions::new().with_allow_http(url.scheme() == "http");
            Arc::new(HttpBuilder::new().with_url(origin).with_client_options(options).build().map_err(|e| fail(&e))?)
        }
        "s3" => Arc::new(AmazonS3Builder::from_env().with_url(url.as_str()).build().map_err(|e| fail(&e))?),
        "gs" => Arc::new(GoogleCloudStorageBuilder::from_env().with_url(url.as_str()).build().map_err(|e| fail(&e))?),
        other => return Err(fail(&format!("unsupported scheme `{other}`"))),
    };
    Ok((store, object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths() {
        assert!(is_url(Path::new("s3://bucket/prefix")));
        assert!(is_url(Path::new("https://example.org/val/")));
        assert!(!is_url(Path::new("data/imagenet")));
        assert!(!is_url(Path::new("/abs/path")));
        assert!(!is_url(Path::new("weird:/x")));
        assert!(!is_url(Path::new("1http://x")));
        assert_eq!(Location::parse(Path::new("rel/dir")).unwrap(), Location::Local("rel/dir".into()));
        let err = Location::parse(Path::new("ftp://host/x")).unwrap_err().to_string();
        assert!(err.contains("unsupported scheme `ftp`"), "{err}");
    }

    #[test]
    fn join_keeps_the_folder_with_or_without_trailing_slash() {
        for base in ["https://h.example/a/val", "https://h.example/a/val/"] {
            let Location::Url(u) = Location::parse(Path::new(base)).unwrap().join("index.json") else { panic!() };
            assert_eq!(u.as_str(), "https://h.example/a/val/index.json");
        }
        assert_eq!(Location::Local("/d".into()).join("shard-00000.tar"), Location::Local("/d/shard-00000.tar".into()));
    }

    #[test]
    fn s3_and_gcs_stores_build_offline_from_bucket_urls() {
        let s3 = Url::parse("s3://my-bucket/imagenet/shards/index.json").unwrap();
        let (store, object) = build_store(&s3).unwrap();
        assert_eq!(store.to_string(), "AmazonS3(my-bucket)");
        assert_eq!(object.as_ref(), "imagenet/shards/index.json");
        assert_eq!(store_key(&s3), "s3://my-bucket");

        let gs = Url::parse("gs://other-bucket/val/shard-00001.tar").unwrap();
        let (store, object) = build_store(&gs).unwrap();
        assert_eq!(store.to_string(), "GoogleCloudStorage(other-bucket)");
        assert_eq!(object.as_ref(), "val/shard-00001.tar");

        let http = Url::parse("http://127.0.0.1:8123/data/val/index.json").unwrap();
        let (store, object) = build_store(&http).unwrap();
        assert_eq!(store.to_string(), "HttpStore");
        assert_eq!(object.as_ref(), "data/val/index.json");
        assert_eq!(store_key(&http), "http://127.0.0.1:8123");
    }
}
