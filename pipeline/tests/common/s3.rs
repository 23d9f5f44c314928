//! A real S3-compatible server on loopback for the object-store tests: moto's (`moto[server]`,
//! in `exporter/requirements-test.txt`), started per test on a free port and killed when the
//! guard drops, panic or not.
//!
//! Why moto: it speaks the S3 REST API the `object_store` client uses, conditional puts
//! (`If-None-Match: *`, which the run lock relies on) included; it runs from the project's Python
//! venv, which the test suite already needs, with no container runtime or downloaded binary; and an
//! S3 server crate would add a large dependency tree to the workspace for tests alone.
//!
//! The test reads the bucket through plain HTTP (moto does not check signatures), so the test
//! process itself needs no credentials; the `qcam-fake` children get them from [`S3::env`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "qcam-test";

pub struct S3 {
    child: Child,
    pub port: u16,
}

fn python() -> PathBuf {
    let p = std::env::var_os("QCAM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(p.exists(), "no Python at {} (set QCAM_PYTHON, or run scripts/setup.sh and pip install -r exporter/requirements-test.txt)", p.display());
    p
}

impl S3 {
    /// Starts the server and creates [`BUCKET`].
    pub fn start() -> S3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto's S3 server");
        let mut s3 = S3 { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(s3.child.try_wait().unwrap().is_none(), "moto exited at start: is moto[server] installed? (pip install -r exporter/requirements-test.txt)");
            assert!(Instant::now() < deadline, "moto never listened on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let created = s3.request("PUT", &format!("/{BUCKET}"));
        assert!(created.starts_with("HTTP/1.1 200") || created.starts_with("HTTP/1.0 200"), "creating the bucket: {created}");
        s3
    }

    /// The environment a `qcam-fake` child needs to reach the server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// `s3://BUCKET/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// One unsigned HTTP/1.1 request; the whole response.
    fn request(&self, method: &str, target: &str) -> String {
        self.send(method, target, &[])
    }

    fn send(&self, method: &str, target: &str, body: &[u8]) -> String {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.port, body.len());
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(body).unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        out
    }

    /// Uploads every file of the local folder `dir` under `prefix/`.
    pub fn upload(&self, dir: &std::path::Path, prefix: &str) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let target = format!("/{BUCKET}/{prefix}/{}", entry.file_name().to_string_lossy());
            let reply = self.send("PUT", &target, &std::fs::read(entry.path()).unwrap());
            assert!(reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"), "PUT {target}: {reply}");
        }
    }

    /// The keys under `prefix/`, relative to it, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let listing = self.request("GET", &format!("/{BUCKET}?list-type=2&max-keys=1000&prefix={prefix}/"));
        assert!(listing.contains("<IsTruncated>false</IsTruncated>"), "a listing of more than 1000 keys, or an error: {listing}");
        let mut keys: Vec<String> = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split_once("</Key>"))
            .map(|(k, _)| k.strip_prefix(&format!("{prefix}/")).unwrap_or(k).to_string())
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
