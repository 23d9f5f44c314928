//! `qcam report RUN_DIR`: the paper's tables from a run's Parquet output and its run.json.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use tables::manifest::Manifest;
use tables::{column, read_table, BoolCol, F32Col, Utf8Col, RUN_FILE};
use operators::infer::Variant;

#[derive(Deserialize)]
struct RunFile {
    pairs: Vec<PairEntry>,
}

#[derive(Deserialize)]
struct PairEntry {
    manifest: Manifest,
}

/// Per (model, variant) classification figures (the paper's Tables 1–2, plus timing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClassRow {
    pub images: usize,
    pub top1: f64,
    pub top5: f64,
    pub infer_ms: f64,
    pub bytes: Option<u64>,
    pub weights: String,
}

pub type ClassTable = BTreeMap<(String, String), ClassRow>;

/// Reads the pair manifests a run recorded, by pair name.
fn manifests(run_dir: &Path) -> Result<BTreeMap<String, Manifest>> {
    let path = run_dir.join(RUN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // A multi-process run writes one file per process; any of them lists the pairs.
        Err(_) => {
            let alt = run_dir.join("run.process-0.json");
            std::fs::read_to_string(&alt).with_context(|| format!("{}: no run.json", run_dir.display()))?
        }
    };
    let run: RunFile = serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))?;
    Ok(run.pairs.into_iter().map(|p| (p.manifest.name.clone(), p.manifest)).collect())
}

pub fn classification(run_dir: &Path) -> Result<ClassTable> {
    let manifests = manifests(run_dir)?;
    let mut acc: BTreeMap<(String, String), (usize, usize, usize, f64)> = BTreeMap::new();
    for batch in read_table(run_dir, "images")? {
        let model = column::<Utf8Col>(&batch, "model");
        let variant = column::<Utf8Col>(&batch, "variant");
        let top1 = column::<BoolCol>(&batch, "top1_correct");
        let top5 = column::<BoolCol>(&batch, "top5_correct");
        let ms = column::<F32Col>(&batch, "infer_ms");
        for i in 0..batch.num_rows() {
            let e = acc.entry((model.value(i).to_string(), variant.value(i).to_string())).or_default();
            e.0 += 1;
            e.1 += top1.value(i) as usize;
            e.2 += top5.value(i) as usize;
            e.3 += ms.value(i) as f64;
        }
    }
    let mut table = ClassTable::new();
    for ((model, variant), (n, t1, t5, ms)) in acc {
        let manifest = manifests.get(&model);
        let v = if variant == "float" { Variant::Float } else { Variant::Quantized };
        let (bytes, weights) = match manifest {
            Some(m) => (Some(m.file(v).bytes), m.provenance(v).kind().to_string()),
            None => (None, "unknown".to_string()),
        };
        let n_f = n.max(1) as f64;
        table.insert(
            (model, variant),
            ClassRow { images: n, top1: t1 as f64 / n_f, top5: t5 as f64 / n_f, infer_ms: ms / n_f, bytes, weights },
        );
    }
    Ok(table)
}

pub fn render_classification(table: &ClassTable) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### Tables 1–2: classification, size and inference time per variant\n");
    let _ = writeln!(s, "| model | variant | weights | images | top-1 % | top-5 % | size MB | infer ms/img |");
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
    for ((model, variant), r) in table {
        let size = r.bytes.map(|b| format!("{:.2}", b as f64 / 1e6)).unwrap_or_else(|| "?".into());
        let _ = writeln!(
            s,
            "| {model} | {variant} | {} | {} | {:.1} | {:.1} | {size} | {:.2} |",
            r.weights,
            r.images,
            100.0 * r.top1,
            100.0 * r.top5,
            r.infer_ms
        );
    }
    s
}

/// Error rows by stage, so a reader sees what did not make it into the tables.
pub fn errors(run_dir: &Path) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for batch in read_table(run_dir, "errors")? {
        let stage = column::<Utf8Col>(&batch, "stage");
        for i in 0..batch.num_rows() {
            *out.entry(stage.value(i).to_string()).or_insert(0) += 1;
        }
    }
    Ok(out)
}

pub fn report(run_dir: &Path) -> Result<String> {
    let mut s = format!("# qcam report: {}\n\n", run_dir.display());
    s.push_str(&render_classification(&classification(run_dir)?));
    let errors = errors(run_dir)?;
    if !errors.is_empty() {
        let _ = writeln!(s, "\nErrors by stage: {errors:?}");
    }
    let _ = writeln!(
        s,
        "\nweights: real = published weights; substitute = a labelled stand-in; random = random init (not a result)"
    );
    Ok(s)
}
