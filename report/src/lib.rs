//! `qcam report RUN_DIR`: the paper's tables and figures from a run's Parquet output and its
//! run.json. Prints Markdown and writes `RUN_DIR/report/`: `report.md`, one CSV per table and the
//! figures as PNG. A table whose input is missing (an older run, an empty subset) is replaced by a
//! line that says so; Figure 3, which needs the images themselves, is skipped with its reason when
//! the data source is not reachable.

pub mod bootstrap;
pub mod collect;
pub mod estimates;
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
use types::{BoxXyxy, Method, Variant};

pub use bootstrap::{ConfigError, Estimate, ReportConfig};
use collect::{Fig3Row, RunImages, Subset};
use estimates::{estimate_group, GroupEstimates, Of, Scope};
use figures::{CamTile, Fig3Panel, HistPanel};
use run_info::RunInfo;
use stats::{mean_hist, ImageEntry, Metric};
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
    let mut images = RunImages::new();
    let pass = collect::images(run_dir, &subset, opts.top_n, &mut images)?;
    collect::pairs(run_dir, &mut images)?;
    let perturbation_absent = match collect::optional_table(run_dir, "perturbation")? {
        Ok(batches) => {
            collect::perturbation(&batches, &mut images)?;
            None
        }
        Err(why) => Some(why),
    };
    let wsol_absent = match collect::optional_table(run_dir, "wsol")? {
        Ok(batches) => {
            collect::wsol_baselines(&batches, &mut images)?;
            None
        }
        Err(why) => Some(why),
    };
    collect::mark_subset(&subset, &mut images);
    let errors = collect::errors(run_dir)?;
    let config = &run.config;
    let pairs: Vec<PairEstimates> = images
        .iter()
        .map(|(model, images)| PairEstimates {
            model,
            weights: run.pair_weights(model),
            images,
            all: estimate_group(config, model, Scope::All, images),
            subset: subset_absent.is_none().then(|| estimate_group(config, model, Scope::Subset, images)),
            perturbed: perturbation_absent.is_none().then(|| estimate_group(config, model, Scope::Perturbed, images)),
            baselined: estimate_group(config, model, Scope::Baselined, images),
        })
        .collect();

    let out_dir = run_dir.join(REPORT_DIR);
    prepare_out_dir(&out_dir)?;
    let mut doc = format!("# qcam report: {}\n\n", run_dir.display());
    let _ = writeln!(
        doc,
        "Weights: real = published weights; substitute = a labelled stand-in; random = random init (not a \
         result). Pair tables give them as float/int8. Variant `quantized` is the int8 model.\n"
    );
    let pct = (100.0 * config.confidence * 1e6).round() / 1e6;
    let _ = writeln!(
        doc,
        "Intervals: `value [lo, hi]` is a {pct} % percentile bootstrap interval over images ({} resamples, \
         seed {}); both variants of an image are resampled together. It says how much the value would move \
         on other images like these, not how the models differ: Table 12 tests that.\n",
        config.resamples, config.seed
    );
    let mut emit = |doc: &mut String, t: &OutTable| -> Result<()> {
        doc.push_str(&t.markdown());
        doc.push('\n');
        t.write_csv(&out_dir)
    };
    let absent = |doc: &mut String, id: TableId, why: &str| {
        let _ = writeln!(doc, "### {}\n\nAbsent: {why}.\n", id.title);
    };

    let variant_rows = variant_rows(&run, &pairs);
    emit(&mut doc, &build(T01, &classification_columns(), &variant_rows))?;

    let pair_rows: Vec<&PairEstimates> = pairs.iter().filter(|p| p.all.get(Of::Pair, Metric::Rmse).n > 0).collect();
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
            figure2_section(&mut doc, &pairs, &out_dir, &mut emit)?;
            emit(&mut doc, &build(T06, &subset_accuracy_columns(), &variant_rows))?;
        }
    }

    emit(&mut doc, &build(T08, &timing_columns(), &variant_rows))?;

    match &perturbation_absent {
        None => {
            let rows: Vec<AucRow> = pairs
                .iter()
                .flat_map(|pair| {
                    Variant::BOTH.map(|variant| AucRow { pair, variant, weights: run.weights(pair.model, variant.as_str()) })
                })
                .filter(|r| r.get(Metric::DeletionAuc).n > 0)
                .collect();
            emit(&mut doc, &build(T10, &perturbation_columns(), &rows))?;
        }
        Some(why) => absent(&mut doc, T10, why),
    }

    let wsol_rows: Vec<WsolRow> = variant_rows
        .iter()
        .flat_map(|row| {
            let all = WsolRow { row, scope: Scope::All };
            let subset = WsolRow { row, scope: Scope::Subset };
            if subset_absent.is_some() { vec![all] } else { vec![all, subset] }
        })
        .collect();
    let mut wsol = build(T11, &wsol_columns(), &wsol_rows);
    wsol.title = format!("{} (τ = {} for IoU and top-1 loc)", T11.title, run.wsol_threshold);
    emit(&mut doc, &wsol)?;
    if let Some(why) = &subset_absent {
        let _ = writeln!(doc, "WSOL over the subset is absent: {why}.\n");
    }
    if pass.bad_curves > 0 {
        let bad = pass.bad_curves;
        let _ = writeln!(doc, "{bad} image rows have an `iou_curve` not 100 points long; MaxBoxAccV2 skips them.\n");
    }

    let paired_rows: Vec<PairedRow> = pairs
        .iter()
        .flat_map(|pair| {
            [Scope::All, Scope::Subset, Scope::Perturbed]
                .into_iter()
                .filter_map(|scope| Some((scope, pair.group(scope)?)))
                .filter(|(_, group)| group.images > 0)
                .flat_map(move |(scope, group)| {
                    scope.compared().iter().map(move |&metric| PairedRow { pair, group, scope, metric })
                })
        })
        .collect();
    emit(&mut doc, &build(T12, &paired_columns(), &paired_rows))?;
    let _ = writeln!(doc, "{}\n", T12_NOTE);

    let baseline_rows: Vec<BaselineRow> = pairs
        .iter()
        .flat_map(|pair| {
            let run = &run;
            Variant::BOTH.into_iter().flat_map(move |variant| {
                Method::ALL.map(|method| BaselineRow { pair, variant, method, weights: run.weights(pair.model, variant.as_str()) })
            })
        })
        .filter(|r| r.wsol(Metric::Iou).n > 0 || r.auc(Metric::DeletionAuc).n > 0)
        .collect();
    if baseline_rows.iter().any(|r| r.method != Method::EigenCam) {
        let mut t = build(T13, &baseline_columns(), &baseline_rows);
        t.title = format!("{} (τ = {})", T13.title, run.wsol_threshold);
        emit(&mut doc, &t)?;
        let _ = writeln!(doc, "{}\n", T13_NOTE);
    } else {
        let why = wsol_absent.unwrap_or_else(|| "this run has no baseline rows".into());
        absent(&mut doc, T13, &why);
    }

    match &subset_absent {
        Some(why) => absent(&mut doc, F03, why),
        None => figure3_section(&mut doc, run_dir, &run, &pass.fig3, opts.top_n, &out_dir)?,
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

/// One pair: its images and the estimates over each scope the run has.
struct PairEstimates<'a> {
    model: &'a str,
    weights: String,
    images: &'a BTreeMap<String, ImageEntry>,
    all: GroupEstimates,
    /// `None` when the run has no subset table (and so for Tables 4–7 and Figures 2–3).
    subset: Option<GroupEstimates>,
    /// `None` when the run has no perturbation table.
    perturbed: Option<GroupEstimates>,
    /// The images deletion/insertion ran the baselines on (empty without baseline rows).
    baselined: GroupEstimates,
}

impl PairEstimates<'_> {
    fn group(&self, scope: Scope) -> Option<&GroupEstimates> {
        match scope {
            Scope::All => Some(&self.all),
            Scope::Subset => self.subset.as_ref(),
            Scope::Perturbed => self.perturbed.as_ref(),
            Scope::Baselined => Some(&self.baselined),
        }
    }

    fn get(&self, scope: Scope, of: Of, metric: Metric) -> Estimate {
        self.group(scope).map(|g| g.get(of, metric)).unwrap_or_default()
    }
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
const T12: TableId = TableId {
    stem: "table12_paired",
    title: "Table 12: int8 − float on the same images: mean paired difference and paired test",
};
const T12_NOTE: &str = "Per image, int8 minus float, over the images both variants have; `_pct` metrics in \
    percentage points. Test: Wilcoxon signed-rank (zeros dropped, mid-ranks for ties; p exact up to 50 pairs \
    without zeros or ties, exact over all sign flips up to 13 pairs, else normal) or, for right/wrong \
    metrics, McNemar's exact test on the discordant images. Two-sided, not corrected for the many rows.";
const T13: TableId = TableId {
    stem: "table13_baselines",
    title: "Table 13: EigenCAM against no-model baselines (WSOL: all images; deletion/insertion: the baselined images)",
};
const T13_NOTE: &str = "Baselines ignore the image: `gaussian` is a centred Gaussian map (σ = `baselines.gaussian_sigma` \
    of the crop side), `full` boxes the whole crop, `random` deletes and inserts pixels in a seeded random order. \
    An EigenCAM number is worth what it beats these by. WSOL columns are over all images, on the draws of Table 11; \
    the AUC columns over the images the baselines ran on (`perturbation.baseline_share` of the perturbed images, \
    best ranks first), EigenCAM's included, on shared draws.";
const F03: TableId = TableId { stem: "figure03", title: "Figure 3: CAMs of the highest-RMSE subset images" };

fn build<R>(id: TableId, columns: &[Column<R>], rows: &[R]) -> OutTable {
    OutTable::build(id.stem, id.title, columns, rows)
}

fn text(s: &str) -> Cell {
    Cell::Text(s.to_string())
}

fn est(e: Estimate, metric: Metric) -> Cell {
    Cell::Est(e, metric.digits())
}

/// One (model, variant), for the per-variant tables.
struct VariantRow<'a> {
    pair: &'a PairEstimates<'a>,
    variant: Variant,
    weights: String,
    bytes: Option<u64>,
}

impl VariantRow<'_> {
    fn get(&self, scope: Scope, metric: Metric) -> Estimate {
        self.pair.get(scope, Of::Variant(self.variant), metric)
    }

    fn all(&self, metric: Metric) -> Cell {
        est(self.get(Scope::All, metric), metric)
    }

    fn subset(&self, metric: Metric) -> Cell {
        est(self.get(Scope::Subset, metric), metric)
    }
}

fn variant_rows<'a>(run: &RunInfo, pairs: &'a [PairEstimates<'a>]) -> Vec<VariantRow<'a>> {
    pairs
        .iter()
        .flat_map(|pair| {
            Variant::BOTH.map(|variant| VariantRow {
                pair,
                variant,
                weights: run.weights(pair.model, variant.as_str()),
                bytes: run.bytes(pair.model, variant.as_str()),
            })
        })
        .filter(|r| r.get(Scope::All, Metric::Top1Pct).n > 0)
        .collect()
}

fn classification_columns<'a>() -> [Column<VariantRow<'a>>; 8] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("images", |r| Cell::Int(r.get(Scope::All, Metric::Top1Pct).n)),
        Column::estimate("top1_pct", |r| r.all(Metric::Top1Pct)),
        Column::estimate("top5_pct", |r| r.all(Metric::Top5Pct)),
        Column::new("size_mb", |r| Cell::Num(r.bytes.map(|b| b as f64 / 1e6), 2)),
        Column::estimate("infer_ms", |r| r.all(Metric::InferMs)),
    ]
}

fn activations_columns<'a>() -> [Column<VariantRow<'a>>; 7] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("subset_images", |r| Cell::Int(r.get(Scope::Subset, Metric::ActEntropyBits).n)),
        Column::estimate("act_entropy_bits", |r| r.subset(Metric::ActEntropyBits)),
        Column::estimate("act_std", |r| r.subset(Metric::ActStd)),
        Column::estimate("act_sparsity_pct", |r| r.subset(Metric::ActSparsityPct)),
    ]
}

fn subset_accuracy_columns<'a>() -> [Column<VariantRow<'a>>; 6] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("subset_images", |r| Cell::Int(r.get(Scope::Subset, Metric::Top1Pct).n)),
        Column::estimate("top1_pct", |r| r.subset(Metric::Top1Pct)),
        Column::estimate("top5_pct", |r| r.subset(Metric::Top5Pct)),
    ]
}

fn timing_columns<'a>() -> [Column<VariantRow<'a>>; 8] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("images", |r| Cell::Int(r.get(Scope::All, Metric::TotalMs).n)),
        Column::estimate("infer_ms", |r| r.all(Metric::InferMs)),
        Column::estimate("cam_ms", |r| r.all(Metric::CamMs)),
        Column::estimate("total_ms", |r| r.all(Metric::TotalMs)),
        Column::estimate("speedup_vs_float", |r| r.all(Metric::SpeedupVsFloat)),
    ]
}

/// Table 3's columns of one scope: images, the mean RMSEs and the sign audit's share.
macro_rules! rmse_scope {
    ($scope:expr, $images:literal, $rmse:literal, $flipped:literal, $closer:literal) => {
        [
            Column::new($images, |p: &&PairEstimates| Cell::Int(p.get($scope, Of::Pair, Metric::Rmse).n)),
            Column::estimate($rmse, |p| est(p.get($scope, Of::Pair, Metric::Rmse), Metric::Rmse)),
            Column::estimate($flipped, |p| est(p.get($scope, Of::Pair, Metric::RmseFlipped), Metric::RmseFlipped)),
            Column::estimate($closer, |p| est(p.get($scope, Of::Pair, Metric::FlippedCloserPct), Metric::FlippedCloserPct)),
        ]
    };
}

fn rmse_columns<'a>() -> Vec<Column<&'a PairEstimates<'a>>> {
    let mut columns =
        vec![Column::new("model", |p: &&PairEstimates| text(p.model)), Column::new("weights", |p| text(&p.weights))];
    columns.extend(rmse_scope!(Scope::All, "images", "mean_rmse", "mean_rmse_flipped", "flipped_closer_pct"));
    columns.extend(rmse_scope!(
        Scope::Subset,
        "subset_images",
        "subset_mean_rmse",
        "subset_mean_rmse_flipped",
        "subset_flipped_closer_pct"
    ));
    columns
}

/// One (model, variant) of the perturbation table.
struct AucRow<'a> {
    pair: &'a PairEstimates<'a>,
    variant: Variant,
    weights: String,
}

impl AucRow<'_> {
    fn get(&self, metric: Metric) -> Estimate {
        self.pair.get(Scope::Perturbed, Of::Variant(self.variant), metric)
    }
}

fn perturbation_columns<'a>() -> [Column<AucRow<'a>>; 6] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("images", |r| Cell::Int(r.get(Metric::DeletionAuc).n)),
        Column::estimate("deletion_auc", |r| est(r.get(Metric::DeletionAuc), Metric::DeletionAuc)),
        Column::estimate("insertion_auc", |r| est(r.get(Metric::InsertionAuc), Metric::InsertionAuc)),
    ]
}

/// One (model, variant) over one set of images, for the WSOL table.
struct WsolRow<'a> {
    row: &'a VariantRow<'a>,
    scope: Scope,
}

impl WsolRow<'_> {
    fn get(&self, metric: Metric) -> Cell {
        est(self.row.get(self.scope, metric), metric)
    }
}

fn wsol_columns<'a>() -> [Column<WsolRow<'a>>; 8] {
    [
        Column::new("model", |r| text(r.row.pair.model)),
        Column::new("variant", |r| text(r.row.variant.as_str())),
        Column::new("weights", |r| text(&r.row.weights)),
        Column::new("scope", |r| text(r.scope.as_str())),
        Column::new("images", |r| Cell::Int(r.row.get(r.scope, Metric::Iou).n)),
        Column::estimate("mean_iou", |r| r.get(Metric::Iou)),
        Column::estimate("maxboxacc_v2_pct", |r| r.get(Metric::MaxBoxAccV2Pct)),
        Column::estimate("top1_loc_pct", |r| r.get(Metric::Top1LocPct)),
    ]
}

/// One (model, variant, method) of Table 13.
struct BaselineRow<'a> {
    pair: &'a PairEstimates<'a>,
    variant: Variant,
    method: Method,
    weights: String,
}

impl BaselineRow<'_> {
    /// WSOL over all images: EigenCAM's is Table 11's.
    fn wsol(&self, metric: Metric) -> Estimate {
        let of = if self.method == Method::EigenCam { Of::Variant(self.variant) } else { Of::Method(self.method, self.variant) };
        self.pair.get(Scope::All, of, metric)
    }

    fn auc(&self, metric: Metric) -> Estimate {
        self.pair.get(Scope::Baselined, Of::Method(self.method, self.variant), metric)
    }
}

fn baseline_columns<'a>() -> [Column<BaselineRow<'a>>; 11] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("variant", |r| text(r.variant.as_str())),
        Column::new("weights", |r| text(&r.weights)),
        Column::new("method", |r| text(r.method.as_str())),
        Column::new("images", |r| Cell::Int(r.wsol(Metric::Iou).n)),
        Column::estimate("mean_iou", |r| est(r.wsol(Metric::Iou), Metric::Iou)),
        Column::estimate("maxboxacc_v2_pct", |r| est(r.wsol(Metric::MaxBoxAccV2Pct), Metric::MaxBoxAccV2Pct)),
        Column::estimate("top1_loc_pct", |r| est(r.wsol(Metric::Top1LocPct), Metric::Top1LocPct)),
        Column::new("auc_images", |r| Cell::Int(r.auc(Metric::DeletionAuc).n)),
        Column::estimate("deletion_auc", |r| est(r.auc(Metric::DeletionAuc), Metric::DeletionAuc)),
        Column::estimate("insertion_auc", |r| est(r.auc(Metric::InsertionAuc), Metric::InsertionAuc)),
    ]
}

/// One metric of one pair over one scope, for Table 12.
struct PairedRow<'a> {
    pair: &'a PairEstimates<'a>,
    group: &'a GroupEstimates,
    scope: Scope,
    metric: Metric,
}

impl PairedRow<'_> {
    fn get(&self, of: Of) -> Cell {
        est(self.group.get(of, self.metric), self.metric)
    }

    fn test(&self) -> Option<paired::TestResult> {
        self.group.test(self.metric)
    }
}

fn paired_columns<'a>() -> [Column<PairedRow<'a>>; 13] {
    [
        Column::new("model", |r| text(r.pair.model)),
        Column::new("weights", |r| text(&r.pair.weights)),
        Column::new("scope", |r| text(r.scope.as_str())),
        Column::new("metric", |r| text(r.metric.name())),
        Column::new("images", |r| Cell::Int(r.group.get(Of::Diff, r.metric).n)),
        Column::estimate("float_mean", |r| r.get(Of::Paired(Variant::Float))),
        Column::estimate("quantized_mean", |r| r.get(Of::Paired(Variant::Quantized))),
        Column::estimate("mean_diff", |r| r.get(Of::Diff)),
        Column::new("test", |r| text(if r.metric.binary() { "mcnemar" } else { "wilcoxon" })),
        Column::new("nonzero", |r| Cell::Int(r.test().map_or(0, |t| t.nonzero))),
        Column::new("statistic", |r| Cell::Num(r.test().map(|t| t.statistic), 1)),
        Column::new("p_value", |r| Cell::P(r.test().map(|t| t.p_value))),
        Column::new("p_method", |r| text(r.test().map_or("", |t| t.p_method.as_str()))),
    ]
}

/// One pair of Figure 2: its Dice coefficient with its interval.
struct DiceRow<'a> {
    panel: &'a HistPanel,
    dice: Estimate,
}

fn dice_columns<'a>() -> [Column<DiceRow<'a>>; 4] {
    [
        Column::new("model", |r| text(&r.panel.model)),
        Column::new("weights", |r| text(&r.panel.weights)),
        Column::new("subset_images", |r| Cell::Int(r.panel.images)),
        Column::estimate("dice", |r| est(r.dice, Metric::Dice)),
    ]
}

/// One bin of one variant's mean histogram, so Figure 2 can be redrawn elsewhere (CSV only).
struct HistBin<'a> {
    model: &'a str,
    variant: &'static str,
    bin: usize,
    share: f64,
}

fn histograms_columns<'a>() -> [Column<HistBin<'a>>; 4] {
    [
        Column::new("model", |r| text(r.model)),
        Column::new("variant", |r| text(r.variant)),
        Column::new("bin", |r| Cell::Int(r.bin)),
        Column::new("mean_share", |r| Cell::Num(Some(r.share), 8)),
    ]
}

// ------------------------------------------------------------------------------------------------
// Figures

fn figure2_section(
    doc: &mut String,
    pairs: &[PairEstimates],
    out_dir: &Path,
    emit: &mut impl FnMut(&mut String, &OutTable) -> Result<()>,
) -> Result<()> {
    let mut panels = Vec::new();
    let mut dices = Vec::new();
    for pair in pairs {
        let subset: Vec<&ImageEntry> = pair.images.values().filter(|e| e.in_subset).collect();
        let hist = |v: Variant| {
            let hists: Vec<Option<&[f32]>> =
                subset.iter().map(|e| e.variants[v].as_ref().and_then(|o| o.act_hist.as_deref())).collect();
            mean_hist(&hists, &vec![1; hists.len()])
        };
        let (Some(float), Some(quantized)) = (hist(Variant::Float), hist(Variant::Quantized)) else { continue };
        let dice = pair.get(Scope::Subset, Of::Pair, Metric::Dice);
        let Some(value) = dice.value else { continue };
        let (model, weights) = (pair.model.to_string(), pair.weights.clone());
        panels.push(HistPanel { model, weights, images: dice.n, float, quantized, dice: value });
        dices.push(dice);
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
    let rows: Vec<DiceRow> = panels.iter().zip(dices).map(|(panel, dice)| DiceRow { panel, dice }).collect();
    emit(doc, &OutTable::build(F02.stem, title, &dice_columns(), &rows))?;
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
