//! Shared by the shard tests: the real sample data, a tiny synthetic Kaggle layout, reading a
//! dataset whole, and a loopback HTTP server that logs its requests.
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use types::{ErrorRow, Sample};
use sources::{DataConfig, Dataset, Fetcher, Layout};

/// The 300-image Kaggle-layout sample (read-only).
pub fn sample_root() -> PathBuf {
    std::env::var_os("QCAM_SAMPLE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/imagenet-val-sample"))
}

pub fn config(path: impl Into<PathBuf>, limit: Option<usize>, shard_size: usize) -> DataConfig {
    DataConfig { path: path.into(), layout: Layout::Auto, shard_size, limit, max_pixels: 1 << 30 }
}

/// Every item of every shard, in shard order.
pub fn read_all(dataset: &Dataset, fetch: &Fetcher) -> Vec<Result<Sample, ErrorRow>> {
    let mut out = Vec::new();
    for shard in &dataset.shards {
        let items: Vec<_> = shard.open(fetch).collect();
        assert_eq!(items.len(), shard.count(), "shard {} yields its count", shard.name);
        out.extend(items);
    }
    out
}

/// Items with the shard name blanked, to compare a folder read with a shard read.
pub fn without_shard(items: Vec<Result<Sample, ErrorRow>>) -> Vec<Result<Sample, ErrorRow>> {
    items
        .into_iter()
        .map(|item| match item {
            Ok(mut s) => {
                s.shard.clear();
                Ok(s)
            }
            Err(mut e) => {
                e.shard.clear();
                Err(e)
            }
        })
        .collect()
}

/// Fake image bytes: recognisable, distinct, `len` long.
pub fn fake_image(i: usize, len: usize) -> Vec<u8> {
    format!("FAKE-IMAGE-{i:04}-").bytes().cycle().take(len).collect()
}

/// A Kaggle layout of `n` fake images `ILSVRC2012_val_0000000{i}`; image 1 has an unknown wnid
/// and image 3 no label at all, so both are label errors.
pub fn tiny_kaggle(root: &Path, n: usize, image_len: usize) {
    let images = root.join("ILSVRC/Data/CLS-LOC/val");
    std::fs::create_dir_all(&images).unwrap();
    let mut csv = String::from("ImageId,PredictionString\n");
    for i in 0..n {
        let id = format!("ILSVRC2012_val_{i:08}");
        std::fs::write(images.join(format!("{id}.JPEG")), fake_image(i, image_len)).unwrap();
        match i {
            1 => csv.push_str(&format!("{id},n99999999 1 2 3 4\n")),
            3 => {}
            _ => csv.push_str(&format!("{id},n01440764 {i} 2 30 40 n01440764 5 6 7 8\n")),
        }
    }
    std::fs::write(root.join("LOC_val_solution.csv"), csv).unwrap();
}

/// A static file server on 127.0.0.1 (GET with and without `Range`, HEAD), one thread per
/// connection, logging `METHOD /path` of every request.
pub struct HttpServer {
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    pub fn serve(root: PathBuf) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread_log = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (root, log) = (root.clone(), thread_log.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &root, &log);
                });
            }
        });
        HttpServer { port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn handle(stream: TcpStream, root: &Path, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
    log.lock().unwrap().push(format!("{method} {path}"));
    let relative = path.trim_start_matches('/');
    let body = if relative.split('/').any(|s| s == "..") { None } else { std::fs::read(root.join(relative)).ok() };
    let Some(body) = body.filter(|_| method == "GET" || method == "HEAD") else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let total = body.len();
    let (status, start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() { total - 1 } else { b.parse::<usize>().unwrap().min(total - 1) };
            ("206 Partial Content", a, b + 1)
        }
        None => ("200 OK", 0, total),
    };
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Last-Modified: Thu, 01 Jan 2026 00:00:00 GMT\r\nETag: \"{total}\"\r\nAccept-Ranges: bytes\r\n\
         Connection: close\r\n",
        end - start
    );
    if status.starts_with("206") {
        head.push_str(&format!("Content-Range: bytes {start}-{}/{total}\r\n", end - 1));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if method == "GET" {
        out.write_all(&body[start..end])?;
    }
    out.flush()?;
    out.shutdown(std::net::Shutdown::Write)
}

/// What `qcam shard` passes to `write_shards`: the decoder's own header reader.
pub fn dims(bytes: &[u8]) -> Option<(u32, u32)> {
    operators::decode::image_dimensions(bytes).ok()
}
