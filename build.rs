//! Bake the libtorch search path into every binary, test and bench, so nothing needs LD_LIBRARY_PATH,
//! and record which libtorch this build linked (run.json reports it).
//! `$ORIGIN/lib` comes first: a relocatable bundle (binary + carved libtorch in `lib/`) runs anywhere.
//!
//! Also compiles `src/torch/jit_shim.cpp` against the same libtorch's headers: the libtorch calls tch does
//! not wrap (`optimize_for_inference`, the X86 quantized engine; see `src/torch/jit.rs`).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=src/torch/jit_shim.cpp");
    println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/lib");
    let mut version = String::from("unknown");
    let libtorch = std::env::var("LIBTORCH").expect("LIBTORCH must name libtorch (.cargo/config.toml sets it)");
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
    println!("cargo:rustc-env=QCAM_LIBTORCH_VERSION={version}");

    // The flags torch-sys builds its own C++ with, so both agree on the ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .file("src/torch/jit_shim.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("qcam_jit_shim");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
