//! Bake the libtorch search path into every binary, test and bench, so nothing needs LD_LIBRARY_PATH,
//! and record which libtorch this build linked (run.json reports it).
//! `$ORIGIN/lib` comes first: a relocatable bundle (binary + carved libtorch in `lib/`) runs anywhere.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib");
    let mut version = String::from("unknown");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let root = std::path::Path::new(&libtorch);
        let lib = root.join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        // The wheel's torch/version.py: `__version__ = '2.13.0+cu130'`.
        let version_py = root.join("version.py");
        println!("cargo:rerun-if-changed={}", version_py.display());
        if let Ok(text) = std::fs::read_to_string(&version_py) {
            if let Some(line) = text.lines().find(|l| l.starts_with("__version__")) {
                version = line.split(['\'', '"']).nth(1).unwrap_or("unknown").to_string();
            }
        }
    }
    println!("cargo:rustc-env=QCAM_LIBTORCH_VERSION={version}");
}
