//! Manifests: what the Python exporter writes is what qcam reads, and a bad or missing model file
//! stops a run before any work with a message that names the file and field.

mod common;

use pipeline::models::PairSpec;
use types::{Manifest, Provenance};

const PAIRS: [&str; 3] = ["efficientnet_lite0", "mobilenet_v2_qnnpack", "resnet18_random"];

#[test]
fn exported_manifests_round_trip() {
    for name in PAIRS {
        let dir = common::pair_dir(name);
        let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
        let manifest = Manifest::from_json(&text).unwrap();
        assert_eq!(manifest.name, name);
        // Serialise and read back: nothing is lost or renamed on the way.
        let again = serde_json::to_string(&manifest).unwrap();
        let back = Manifest::from_json(&again).unwrap();
        assert_eq!(back, manifest);
        // And it agrees with Python's own reading of the file, key by key.
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(ours, original, "{name}: Rust's manifest model differs from the exported JSON");
        let spec = PairSpec::read(&common::models_dir(), name).unwrap();
        spec.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn provenance_is_labelled() {
    let spec = PairSpec::read(&common::models_dir(), "resnet18_random").unwrap();
    assert!(matches!(spec.manifest.provenance(types::Variant::Float), Provenance::Random(_)));
    let spec = PairSpec::read(&common::models_dir(), "mobilenet_v2_qnnpack").unwrap();
    assert_eq!(spec.manifest.provenance(types::Variant::Float).kind(), "substitute");
    assert_eq!(spec.manifest.provenance(types::Variant::Quantized).kind(), "real");
}

fn copy_pair(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let src = common::pair_dir(name);
    let dst = tmp.path().join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
    }
    tmp
}

#[test]
fn missing_model_file_is_a_clear_error() {
    let tmp = copy_pair("resnet18_random");
    std::fs::remove_file(tmp.path().join("resnet18_random/quantized.pt")).unwrap();
    let spec = PairSpec::read(tmp.path(), "resnet18_random").unwrap();
    let err = spec.verify().unwrap_err().to_string();
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("quantized.file"), "{err}");
    assert!(err.contains("quantized.pt") && err.contains("missing"), "{err}");
}

#[test]
fn tampered_model_file_is_refused() {
    let tmp = copy_pair("resnet18_random");
    let path = tmp.path().join("resnet18_random/float.pt");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let spec = PairSpec::read(tmp.path(), "resnet18_random").unwrap();
    let err = spec.verify().unwrap_err().to_string();
    assert!(err.contains("sha256") && err.contains("refusing"), "{err}");
}

#[test]
fn unknown_manifest_key_names_the_file() {
    let tmp = copy_pair("resnet18_random");
    let path = tmp.path().join("resnet18_random/manifest.json");
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    value["surprise"] = serde_json::json!(1);
    std::fs::write(&path, value.to_string()).unwrap();
    let err = PairSpec::read(tmp.path(), "resnet18_random").err().unwrap().to_string();
    assert!(err.contains("manifest.json") && err.contains("surprise"), "{err}");
}

#[test]
fn a_pair_under_another_engine_is_named_for_it() {
    let dir = common::models_dir();
    let spec = PairSpec::read(&dir, "mobilenet_v2_qnnpack@x86").unwrap();
    assert_eq!(spec.name(), "mobilenet_v2_qnnpack@x86");
    assert_eq!(spec.manifest.name, "mobilenet_v2_qnnpack");
    assert_eq!(spec.engine(types::Variant::Quantized), Some(types::Engine::X86));
    assert_eq!(spec.engine(types::Variant::Float), None);
    // The manifest's own engine is no override: the pair keeps its name.
    let own = PairSpec::read(&dir, "mobilenet_v2_qnnpack@qnnpack").unwrap();
    assert_eq!((own.name(), own.engine(types::Variant::Quantized)), ("mobilenet_v2_qnnpack", Some(types::Engine::Qnnpack)));
    let err = PairSpec::read(&dir, "mobilenet_v2_qnnpack@avx").err().unwrap().to_string();
    assert!(err.contains("mobilenet_v2_qnnpack@avx") && err.contains("not a quantized engine"), "{err}");
}
