//! `qcam report RUN_DIR`: the paper's tables and figures from a run's Parquet output and its
//! run.json. Prints Markdown and writes `RUN_DIR/report/`: `report.md`, one CSV per table and the
//! figures as PNG. A table whose input is missing (an older run, an empty subset) is replaced by a
//! line that says so; Figure 3, which needs the images themselves, is skipped with its reason when
//! the data source is not reachable.

pub mod collect;
pub mod figures;
pub mod paired;
pub mod pixels;
pub mod run_info;
pub mod stats;
pub mod table;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use operators::decode::decode_sample;
use operators::eigencam::cam_full;
use types::BoxXyxy;

use collect::{Fig3Row, PairAccs, Subset, VariantAccs};
use figures::{CamTile, Fig3Panel, HistPanel};
use run_info::RunInfo;
use stats::{dice, speedup, AucAcc, ImageAcc};
use table::{Cell, Column, OutTable};

/// The folder inside a run that the report writes.
pub const REPORT_DIR: &str = "report";
pub const REPORT_FILE: &str = "report.md";

pub struct Options {
    /// Figure 3 shows the subset images ranked 1..=top_n of each pair.
    pub top_n: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { top_n: 5 }
    }
}

pub fn report(run_dir: &Path) -> Result<String> {
    report_with(run_dir, &Options::default())
}

pub fn report_with(run_dir: &Path, opts: &Options) -> Result<String> {
    let run = RunInfo::read(run_dir)?;
    let subset_batches = collect::optional_table(run_dir, "subset")?;
    let subset = subset_batches.as_ref().map(|b| Subset::read(b)).unwrap_or_default();
    let subset_absent = subset_batches.as_ref().err().cloned();
    let images = collect::images(run_dir, &subset, opts.top_n)?;
    let pairs = collect::pairs(run_dir, &subset)?;
    let perturbation = collect::optional_table(run_dir, "perturbation")?.map(|b| collect::perturbation(&b));
    let errors = collect::errors(run_dir)?;

    let out_dir = run_dir.join(REPORT_DIR);
    prepare_out_dir(&out_dir)?;
    let mut doc = format!("# qcam report: {}\n\n", run_dir.display());
    let _ = writeln!(
        doc,
        "Weights: real = published weights; substitute = a labelled stand-in; random = random init (not a \
         result). Pair tables give them as float/int8. Variant `quantized` is the int8 model.\n"
    );
    let mut emit = |doc: &mut String, t: &OutTable| -> Result<()> {
        doc.push_str(&t.markdown());
        doc.push('\n');
        t.write_csv(&out_dir)
    };
    let absent = |doc: &mut String, id: TableId, why: &str| {
        let _ = writeln!(doc, "### {}\n\nAbsent: {why}.\n", id.title);
    };

    let variant_rows = variant_rows(&run, &images.variants);
    emit(&mut doc, &build(T01, &classification_columns(), &variant_rows))?;

    let pair_rows: Vec<PairRow> =
        pairs.iter().map(|(m, a)| PairRow { model: m, weights: run.pair_weights(m), accs: a }).collect();
    emit(&mut doc, &build(T03, &rmse_columns(), &pair_rows))?;
    match (&subset_absent, run.top_fraction) {
        (Some(why), _) => {
            let _ = writeln!(doc, "Subset columns are empty: {why}.\n");
        }
        (None, Some(f)) => {
            let pct = (100.0 * f * 1e6).round() / 1e6; // 0.05 → 5, not 5.000000000000001
            let _ = writeln!(doc, "Subset: the run's `subset` table, the top {pct} % of each pair's images by RMSE.\n");
        }
        (None, None) => {}
    }

    match &subset_absent {
        Some(why) => {
            absent(&mut doc, T04, why);
            absent(&mut doc, F02, why);
            absent(&mut doc, T06, why);
        }
        None => {
            emit(&mut doc, &build(T04, &activations_columns(), &variant_rows))?;
            figure2_section(&mut doc, &run, &images.variants, &out_dir, &mut emit)?;
            emit(&mut doc, &build(T06, &subset_accuracy_columns(), &variant_rows))?;
        }
    }

    emit(&mut doc, &build(T08, &timing_columns(), &variant_rows))?;

    match &perturbation {
        Ok(accs) => {
            let rows: Vec<AucRow> = accs
                .iter()
                .map(|((m, v), acc)| AucRow { model: m, variant: v, weights: run.weights(m, v), acc })
                .collect();
            emit(&mut doc, &build(T10, &perturbation_columns(), &rows))?;
        }
        Err(why) => absent(&mut doc, T10, why),
    }

    let wsol_rows: Vec<WsolRow> = variant_rows
        .iter()
        .flat_map(|r| {
            let all = WsolRow { row: r, scope: "all", acc: &r.accs.all };
            let subset = WsolRow { row: r, scope: "subset", acc: &r.accs.subset };
            if subset_absent.is_some() { vec![all] } else { vec![all, subset] }
        })
        .collect();
    let mut wsol = build(T11, &wsol_columns(), &wsol_rows);
    wsol.title = format!("{} (τ = {} for IoU and top-1 loc)", T11.title, run.wsol_threshold);
    emit(&mut doc, &wsol)?;
    if let Some(why) = &subset_absent {
        let _ = writeln!(doc, "WSOL over the subset is absent: {why}.\n");
    }
    let bad: usize = images.variants.values().map(|a| a.all.bad_curves).sum();
    if bad > 0 {
        let _ = writeln!(doc, "{bad} image rows have an `iou_curve` not 100 points long; MaxBoxAccV2 skips them.\n");
    }

    match &subset_absent {
        Some(why) => absent(&mut doc, F03, why),
        None => figure3_section(&mut doc, run_dir, &run, &images.fig3, opts.top_n, &out_dir)?,
    }

    if !errors.is_empty() {
        let _ = writeln!(doc, "Errors by stage: {errors:?}");
    }
    std::fs::write(out_dir.join(REPORT_FILE), &doc)?;
    Ok(doc)
}

/// Creates `RUN_DIR/report/` and removes what an earlier report wrote there, so no stale figure
/// survives a report that now skips it.
fn prepare_out_dir(out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir)?;
    for entry in std::fs::read_dir(out_dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let generated = name.starts_with("table") || name.starts_with("figure");
        let ours = name == REPORT_FILE || (generated && (name.ends_with(".csv") || name.ends_with(".png")));
        if ours && path.is_file() {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Output tables: each one's columns, declared once.

/// An output table's file stem (its CSV is `<stem>.csv`) and Markdown title.
#[derive(Clone, Copy)]
struct TableId {
    stem: &'static str,
    title: &'static str,
}

const T01: TableId = TableId {
    stem: "table01_classification",
    title: "Tables 1–2: classification and model size per variant (all images)",
};
const T03: TableId = TableId {
    stem: "table03_rmse",
    title: "Table 3: RMSE between the float and int8 CAMs, and the sign audit (SPEC §4)",
};
const T04: TableId = TableId {
    stem: "table04_activations",
    title: "Tables 4–5: activation statistics per variant (subset images, SPEC §7)",
};
const F02: TableId = TableId {
    stem: "figure02_dice",
    title: "Figure 2: mean activation histograms, float vs int8 (subset images)",
};
const T06: TableId = TableId { stem: "table06_subset_accuracy", title: "Tables 6–7: top-1 and top-5 on the subset" };
const T08: TableId = TableId {
    stem: "table08_timing",
    title: "Tables 8–9: time per image and the int8 speed-up (all images)",
};
const T10: TableId = TableId {
    stem: "table10_perturbation",
    title: "Table 10: deletion and insertion AUC per variant (SPEC §5)",
};
const T11: TableId = TableId { stem: "table11_wsol", title: "Table 11: weakly supervised localization (SPEC §6)" };
const F03: TableId = TableId { stem: "figure03", title: "Figure 3: CAMs of the highest-RMSE subset images" };

fn build<R>(id: TableId, columns: &[Column<R>], rows: &[R]) -> OutTable {
    OutTable::build(id.stem, id.title, columns, rows)
}

/// One (model, variant), for the per-variant tables.
struct VariantRow<'a> {
    model: &'a str,
    variant: &'a str,
    weights: String,
    bytes: Option<u64>,
    accs: &'a VariantAccs,
    /// Float total time over this variant's.
    speedup: Option<f64>,
}

fn variant_rows<'a>(run: &RunInfo, variants: &'a BTreeMap<(String, String), VariantAccs>) -> Vec<VariantRow<'a>> {
    variants
        .iter()
        .map(|((model, variant), accs)| {
            let float_ms = variants.get(&(model.clone(), "float".into())).and_then(|f| f.all.total_ms.value());
            VariantRow {
                model,
                variant,
                weights: run.weights(model, variant),
                bytes: run.bytes(model, variant),
                accs,
                speedup: speedup(float_ms, accs.all.total_ms.value()),
            }
        })
        .collect()
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn classification_columns<'a>() -> [Column<VariantRow<'a>>; 8] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "images", cell: |r| Cell::Int(r.accs.all.images()) },
        Column { name: "top1_pct", cell: |r| Cell::Num(r.accs.all.top1.pct(), 1) },
        Column { name: "top5_pct", cell: |r| Cell::Num(r.accs.all.top5.pct(), 1) },
        Column { name: "size_mb", cell: |r| Cell::Num(r.bytes.map(|b| b as f64 / 1e6), 2) },
        Column { name: "infer_ms", cell: |r| Cell::Num(r.accs.all.infer_ms.value(), 2) },
    ]
}

fn activations_columns<'a>() -> [Column<VariantRow<'a>>; 7] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "subset_images", cell: |r| Cell::Int(r.accs.subset.images()) },
        Column { name: "act_entropy_bits", cell: |r| Cell::Num(r.accs.subset.act_entropy.value(), 3) },
        Column { name: "act_std", cell: |r| Cell::Num(r.accs.subset.act_std.value(), 4) },
        Column { name: "act_sparsity_pct", cell: |r| Cell::Num(r.accs.subset.act_sparsity.value(), 2) },
    ]
}

fn subset_accuracy_columns<'a>() -> [Column<VariantRow<'a>>; 6] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "subset_images", cell: |r| Cell::Int(r.accs.subset.images()) },
        Column { name: "top1_pct", cell: |r| Cell::Num(r.accs.subset.top1.pct(), 1) },
        Column { name: "top5_pct", cell: |r| Cell::Num(r.accs.subset.top5.pct(), 1) },
    ]
}

fn timing_columns<'a>() -> [Column<VariantRow<'a>>; 8] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "images", cell: |r| Cell::Int(r.accs.all.images()) },
        Column { name: "infer_ms", cell: |r| Cell::Num(r.accs.all.infer_ms.value(), 2) },
        Column { name: "cam_ms", cell: |r| Cell::Num(r.accs.all.cam_ms.value(), 2) },
        Column { name: "total_ms", cell: |r| Cell::Num(r.accs.all.total_ms.value(), 2) },
        Column { name: "speedup_vs_float", cell: |r| Cell::Num(r.speedup, 2) },
    ]
}

/// One pair, for Table 3.
struct PairRow<'a> {
    model: &'a str,
    weights: String,
    accs: &'a PairAccs,
}

fn rmse_columns<'a>() -> [Column<PairRow<'a>>; 10] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "images", cell: |r| Cell::Int(r.accs.all.rmse.n) },
        Column { name: "mean_rmse", cell: |r| Cell::Num(r.accs.all.rmse.value(), 2) },
        Column { name: "mean_rmse_flipped", cell: |r| Cell::Num(r.accs.all.rmse_flipped.value(), 2) },
        Column { name: "flipped_closer_pct", cell: |r| Cell::Num(r.accs.all.flipped_closer.pct(), 1) },
        Column { name: "subset_images", cell: |r| Cell::Int(r.accs.subset.rmse.n) },
        Column { name: "subset_mean_rmse", cell: |r| Cell::Num(r.accs.subset.rmse.value(), 2) },
        Column { name: "subset_mean_rmse_flipped", cell: |r| Cell::Num(r.accs.subset.rmse_flipped.value(), 2) },
        Column { name: "subset_flipped_closer_pct", cell: |r| Cell::Num(r.accs.subset.flipped_closer.pct(), 1) },
    ]
}

/// One (model, variant) of the perturbation table.
struct AucRow<'a> {
    model: &'a str,
    variant: &'a str,
    weights: String,
    acc: &'a AucAcc,
}

fn perturbation_columns<'a>() -> [Column<AucRow<'a>>; 6] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "weights", cell: |r| text(&r.weights) },
        Column { name: "images", cell: |r| Cell::Int(r.acc.deletion.n) },
        Column { name: "deletion_auc", cell: |r| Cell::Num(r.acc.deletion.value(), 4) },
        Column { name: "insertion_auc", cell: |r| Cell::Num(r.acc.insertion.value(), 4) },
    ]
}

/// One (model, variant) over one set of images, for the WSOL table.
struct WsolRow<'a> {
    row: &'a VariantRow<'a>,
    scope: &'static str,
    acc: &'a ImageAcc,
}

fn wsol_columns<'a>() -> [Column<WsolRow<'a>>; 8] {
    [
        Column { name: "model", cell: |r| text(r.row.model) },
        Column { name: "variant", cell: |r| text(r.row.variant) },
        Column { name: "weights", cell: |r| text(&r.row.weights) },
        Column { name: "scope", cell: |r| text(r.scope) },
        Column { name: "images", cell: |r| Cell::Int(r.acc.images()) },
        Column { name: "mean_iou", cell: |r| Cell::Num(r.acc.iou.value(), 4) },
        Column { name: "maxboxacc_v2_pct", cell: |r| Cell::Num(r.acc.max_box_acc_v2_pct(), 2) },
        Column { name: "top1_loc_pct", cell: |r| Cell::Num(r.acc.top1_loc.pct(), 2) },
    ]
}

/// One pair of Figure 2, as a table of its Dice coefficient.
const DICE: [Column<HistPanel>; 4] = [
    Column { name: "model", cell: |p| Cell::Text(p.model.clone()) },
    Column { name: "weights", cell: |p| Cell::Text(p.weights.clone()) },
    Column { name: "subset_images", cell: |p| Cell::Int(p.images) },
    Column { name: "dice", cell: |p| Cell::Num(Some(p.dice), 4) },
];

/// One bin of one variant's mean histogram, so Figure 2 can be redrawn elsewhere (CSV only).
struct HistBin<'a> {
    model: &'a str,
    variant: &'static str,
    bin: usize,
    share: f64,
}

fn histograms_columns<'a>() -> [Column<HistBin<'a>>; 4] {
    [
        Column { name: "model", cell: |r| text(r.model) },
        Column { name: "variant", cell: |r| text(r.variant) },
        Column { name: "bin", cell: |r| Cell::Int(r.bin) },
        Column { name: "mean_share", cell: |r| Cell::Num(Some(r.share), 8) },
    ]
}

// ------------------------------------------------------------------------------------------------
// Figures

fn figure2_section(
    doc: &mut String,
    run: &RunInfo,
    variants: &BTreeMap<(String, String), VariantAccs>,
    out_dir: &Path,
    emit: &mut impl FnMut(&mut String, &OutTable) -> Result<()>,
) -> Result<()> {
    let models: BTreeSet<&str> = variants.keys().map(|(m, _)| m.as_str()).collect();
    let mut panels = Vec::new();
    for model in models {
        let hist = |v: &str| variants.get(&(model.to_string(), v.to_string())).and_then(|a| a.subset.act_hist.value());
        let (Some(float), Some(quantized)) = (hist("float"), hist("quantized")) else { continue };
        if float.len() != quantized.len() {
            continue;
        }
        let images = variants[&(model.to_string(), "float".to_string())].subset.images();
        let dice = dice(&float, &quantized);
        panels.push(HistPanel { model: model.into(), weights: run.pair_weights(model), images, float, quantized, dice });
    }
    if panels.is_empty() {
        let _ = writeln!(doc, "### {}\n\nAbsent: no pair has subset images of both variants.\n", F02.title);
        return Ok(());
    }
    let png = "figure02_histograms.png";
    figures::figure2(&panels, &out_dir.join(png))?;
    let floor = figures::HIST_FLOOR;
    let _ = writeln!(doc, "### {}\n\n![Figure 2]({png})\n\nLog scale; empty bins are drawn at {floor:.0e}.\n", F02.title);
    let title = "Figure 2 data: Dice of the mean float and int8 histograms (SPEC §7)";
    emit(doc, &OutTable::build(F02.stem, title, &DICE, &panels))?;
    let bins: Vec<HistBin> = panels
        .iter()
        .flat_map(|p| {
            hist_bins(&p.model, "float", &p.float).chain(hist_bins(&p.model, "quantized", &p.quantized))
        })
        .collect();
    let hist_table = OutTable::build("figure02_histograms", "", &histograms_columns(), &bins);
    hist_table.write_csv(out_dir)?;
    let _ = writeln!(doc, "Histograms: `{}`\n", hist_table.csv_name());
    Ok(())
}

fn hist_bins<'a>(model: &'a str, variant: &'static str, hist: &'a [f64]) -> impl Iterator<Item = HistBin<'a>> + 'a {
    hist.iter().enumerate().map(move |(bin, &share)| HistBin { model, variant, bin, share })
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn figure3_section(
    doc: &mut String,
    run_dir: &Path,
    run: &RunInfo,
    fig3: &BTreeMap<String, BTreeMap<i32, Fig3Row>>,
    top_n: usize,
    out_dir: &Path,
) -> Result<()> {
    let _ = writeln!(doc, "### {}\n", F03.title);
    let skip = |doc: &mut String, why: &str| {
        let _ = writeln!(doc, "Figure 3 skipped: {why}.\n");
    };
    if fig3.is_empty() {
        skip(doc, "no subset image has a row in the images table");
        return Ok(());
    }
    let data = match &run.data {
        Ok(d) => d,
        Err(why) => {
            skip(doc, why);
            return Ok(());
        }
    };
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in fig3.values().flat_map(|rows| rows.values()) {
        wanted.entry(row.shard.clone()).or_default().insert(row.image_id.clone());
    }
    let (samples, mut problems) = match pixels::find_samples(data, run_dir, &wanted) {
        Ok(found) => found,
        Err(why) => {
            skip(doc, &why);
            return Ok(());
        }
    };
    for (model, rows) in fig3 {
        let Some(manifest) = run.manifests.get(model) else {
            problems.push(format!("{model}: no manifest in run.json, so no preprocessing to redo"));
            continue;
        };
        let p = &manifest.preprocess;
        let mut panels = Vec::new();
        for row in rows.values() {
            let Some(sample) = samples.get(&row.image_id) else { continue };
            let image = match decode_sample(sample, p, data.max_pixels) {
                Ok(img) => img,
                Err(e) => {
                    problems.push(format!("{}: {e}", row.image_id));
                    continue;
                }
            };
            let crop = image.crop as usize;
            let tile = |cam: &Option<collect::CamRow>| -> Option<CamTile> {
                let c = cam.as_ref()?;
                (c.cam.len() == c.cam_h * c.cam_w && !c.cam.is_empty()).then(|| CamTile {
                    cam: cam_full(&c.cam, c.cam_h, c.cam_w, crop),
                    bbox: BoxXyxy::new(c.bbox[0], c.bbox[1], c.bbox[2], c.bbox[3]),
                    iou: c.iou,
                    top1_correct: c.top1_correct,
                })
            };
            panels.push(Fig3Panel {
                caption: format!("rank {} · {} · RMSE {:.1}", row.rank, row.image_id, row.rmse),
                image: pixels::unnormalise(&image.pixels, crop, p.mean, p.std),
                gt: image.boxes.clone(),
                float: tile(&row.float),
                quantized: tile(&row.quantized),
            });
        }
        if panels.is_empty() {
            problems.push(format!("{model}: none of its top-{top_n} images could be shown"));
            continue;
        }
        let png = format!("figure03_{}.png", file_safe(model));
        let weights = run.pair_weights(model);
        let title = format!("{model} ({weights}): subset images ranked 1–{} by CAM RMSE", panels.len());
        figures::figure3(&title, &panels, &out_dir.join(&png))?;
        let _ = writeln!(doc, "![Figure 3: {model}]({png})\n");
    }
    if !problems.is_empty() {
        let _ = writeln!(doc, "Left out of Figure 3: {}.\n", problems.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(file_safe("mobilenet_v2-qnnpack"), "mobilenet_v2-qnnpack");
        assert_eq!(file_safe("../a b"), "___a_b");
    }
}
