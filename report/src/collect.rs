//! One pass over each table of a run into one `ImageEntry` per (pair, image): the scalars every
//! table's statistics and intervals need, never a whole table (the `images` table of a full
//! ImageNet run is gigabytes, mostly its lists). Also keeps the CAMs Figure 3 draws.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Result};
use arrow::array::{Array, RecordBatch};

use tables::{column, read_table, BoolCol, F32Col, F64Col, I32Col, ListCol, Utf8Col};

use types::{ByVariant, Method, Variant};

use crate::stats::{AucObs, BoxHits, ImageEntry, ImageObs, PairObs, WsolObs};

/// A table's batches, or why the report has to do without it.
pub fn optional_table(run_dir: &Path, name: &str) -> Result<Result<Vec<RecordBatch>, String>> {
    if !run_dir.join(name).is_dir() {
        return Ok(Err(format!("this run has no `{name}` table (a run by an older qcam, or the step was off)")));
    }
    let batches = read_table(run_dir, name)?;
    if batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(Err(format!("the `{name}` table of this run is empty")));
    }
    Ok(Ok(batches))
}

fn lists<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> (&'a T, &'a [i32]) {
    let list = column::<ListCol>(batch, name);
    let values = list
        .values()
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("column `{name}` holds lists of an unexpected type"));
    (values, list.value_offsets())
}

/// Row `i` of a `list<float32>` column as a slice.
fn f32_list<'a>(col: &(&'a F32Col, &'a [i32]), i: usize) -> &'a [f32] {
    let (values, offsets) = col;
    &values.values()[offsets[i] as usize..offsets[i + 1] as usize]
}

fn i32_list<'a>(col: &(&'a I32Col, &'a [i32]), i: usize) -> &'a [i32] {
    let (values, offsets) = col;
    &values.values()[offsets[i] as usize..offsets[i + 1] as usize]
}

/// The subset table (SPEC §4) as written by the run: rank and rmse per (model, image). The report
/// never re-derives it.
#[derive(Clone, Debug, Default)]
pub struct Subset {
    pub by_model: BTreeMap<String, HashMap<String, (i32, f32)>>,
}

impl Subset {
    pub fn read(batches: &[RecordBatch]) -> Subset {
        let mut by_model: BTreeMap<String, HashMap<String, (i32, f32)>> = BTreeMap::new();
        for batch in batches {
            let (model, image_id) = (column::<Utf8Col>(batch, "model"), column::<Utf8Col>(batch, "image_id"));
            let (rank, rmse) = (column::<I32Col>(batch, "rank"), column::<F32Col>(batch, "rmse"));
            for i in 0..batch.num_rows() {
                by_model
                    .entry(model.value(i).to_string())
                    .or_default()
                    .insert(image_id.value(i).to_string(), (rank.value(i), rmse.value(i)));
            }
        }
        Subset { by_model }
    }

    pub fn get(&self, model: &str, image_id: &str) -> Option<(i32, f32)> {
        self.by_model.get(model)?.get(image_id).copied()
    }
}

/// One variant's stored CAM of a Figure 3 image.
#[derive(Clone, Debug, PartialEq)]
pub struct CamRow {
    pub cam_h: usize,
    pub cam_w: usize,
    pub cam: Vec<f32>,
    pub bbox: [i32; 4],
    pub iou: f32,
    pub top1_correct: bool,
}

/// One row of Figure 3: a subset image of a pair, with both variants' CAMs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fig3Row {
    pub image_id: String,
    pub shard: String,
    pub rank: i32,
    pub rmse: f32,
    pub float: Option<CamRow>,
    pub quantized: Option<CamRow>,
}

/// Every image of every pair, by model then image_id: the order a group's draws index.
pub type RunImages = BTreeMap<String, BTreeMap<String, ImageEntry>>;

fn entry<'a>(images: &'a mut RunImages, model: &str, image_id: &str) -> &'a mut ImageEntry {
    images.entry(model.to_string()).or_default().entry(image_id.to_string()).or_default()
}

fn side<T>(both: &mut ByVariant<T>, v: Variant) -> &mut T {
    match v {
        Variant::Float => &mut both.float,
        Variant::Quantized => &mut both.quantized,
    }
}

/// A row the run should not have written twice: the report would have to pick one.
fn once<T>(slot: &mut Option<T>, value: T, table: &str, model: &str, image_id: &str, variant: &str) -> Result<()> {
    if slot.is_some() {
        bail!("`{table}` has two rows for image {image_id}, pair {model}{variant}");
    }
    *slot = Some(value);
    Ok(())
}

#[derive(Default)]
pub struct ImagesPass {
    /// By model, then rank: the subset images with rank ≤ top_n.
    pub fig3: BTreeMap<String, BTreeMap<i32, Fig3Row>>,
    /// Rows whose `iou_curve` is not SPEC's 100 points (left out of MaxBoxAccV2, counted here).
    pub bad_curves: usize,
}

/// Reads `images` into `out`, keeping per row only the scalars the tables use (and the
/// histogram of subset images, for Figure 2), plus the CAMs Figure 3 draws.
pub fn images(run_dir: &Path, subset: &Subset, top_n: usize, out: &mut RunImages) -> Result<ImagesPass> {
    let mut pass = ImagesPass::default();
    for batch in read_table(run_dir, "images")? {
        let (image_id, shard) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "shard"));
        let (model, variant) = (column::<Utf8Col>(&batch, "model"), column::<Utf8Col>(&batch, "variant"));
        let (top1, top5) = (column::<BoolCol>(&batch, "top1_correct"), column::<BoolCol>(&batch, "top5_correct"));
        let (infer_ms, cam_ms) = (column::<F32Col>(&batch, "infer_ms"), column::<F32Col>(&batch, "cam_ms"));
        let iou = column::<F32Col>(&batch, "iou");
        let act_mean = column::<F64Col>(&batch, "act_mean");
        let entropy = column::<F64Col>(&batch, "act_entropy");
        let std = column::<F64Col>(&batch, "act_std");
        let sparsity = column::<F64Col>(&batch, "act_sparsity");
        let (cam_h, cam_w) = (column::<I32Col>(&batch, "cam_h"), column::<I32Col>(&batch, "cam_w"));
        let iou_curve = lists::<F32Col>(&batch, "iou_curve");
        let act_hist = lists::<F32Col>(&batch, "act_hist");
        let cam = lists::<F32Col>(&batch, "cam");
        let bbox = lists::<I32Col>(&batch, "box");
        for i in 0..batch.num_rows() {
            let (m, id, v) = (model.value(i), image_id.value(i), variant.value(i));
            let in_subset = subset.get(m, id);
            let box_hits = BoxHits::new(f32_list(&iou_curve, i));
            pass.bad_curves += box_hits.is_none() as usize;
            let obs = ImageObs {
                top1_correct: top1.value(i),
                top5_correct: top5.value(i),
                infer_ms: infer_ms.value(i),
                cam_ms: cam_ms.value(i),
                iou: iou.value(i),
                box_hits,
                act_mean: act_mean.value(i),
                act_std: std.value(i),
                act_sparsity: sparsity.value(i),
                act_entropy: entropy.value(i),
                act_hist: in_subset.map(|_| f32_list(&act_hist, i).to_vec()),
            };
            let (top1_correct, iou_value) = (obs.top1_correct, obs.iou);
            let parsed: Variant = v.parse()?;
            let e = entry(out, m, id);
            once(side(&mut e.variants, parsed), obs, "images", m, id, &format!(", variant {v}"))?;
            let Some((rank, rmse)) = in_subset else { continue };
            if rank < 1 || rank as usize > top_n {
                continue;
            }
            let row = pass.fig3.entry(m.to_string()).or_default().entry(rank).or_insert_with(|| Fig3Row {
                image_id: id.to_string(),
                shard: shard.value(i).to_string(),
                rank,
                rmse,
                ..Fig3Row::default()
            });
            let b = i32_list(&bbox, i);
            let cam_row = CamRow {
                cam_h: cam_h.value(i).max(0) as usize,
                cam_w: cam_w.value(i).max(0) as usize,
                cam: f32_list(&cam, i).to_vec(),
                bbox: if b.len() == 4 { [b[0], b[1], b[2], b[3]] } else { [0; 4] },
                iou: iou_value,
                top1_correct,
            };
            match parsed {
                Variant::Float => row.float = Some(cam_row),
                Variant::Quantized => row.quantized = Some(cam_row),
            }
        }
    }
    Ok(pass)
}

/// Reads `pairs` into `out`.
pub fn pairs(run_dir: &Path, out: &mut RunImages) -> Result<()> {
    for batch in read_table(run_dir, "pairs")? {
        let (image_id, model) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "model"));
        let (rmse, flipped) = (column::<F32Col>(&batch, "rmse"), column::<F32Col>(&batch, "rmse_flipped"));
        for i in 0..batch.num_rows() {
            let (m, id) = (model.value(i), image_id.value(i));
            let obs = PairObs { rmse: rmse.value(i), rmse_flipped: flipped.value(i) };
            once(&mut entry(out, m, id).pair, obs, "pairs", m, id, "")?;
        }
    }
    Ok(())
}

/// Reads `perturbation`'s AUCs into `out`: EigenCAM's rows, and the baselines' (a run by an older
/// qcam has no `method` column: all its rows are EigenCAM's).
pub fn perturbation(batches: &[RecordBatch], out: &mut RunImages) -> Result<()> {
    for batch in batches {
        let (image_id, model) = (column::<Utf8Col>(batch, "image_id"), column::<Utf8Col>(batch, "model"));
        let variant = column::<Utf8Col>(batch, "variant");
        let method = batch.column_by_name("method").map(|_| column::<Utf8Col>(batch, "method"));
        let (del, ins) = (column::<F32Col>(batch, "deletion_auc"), column::<F32Col>(batch, "insertion_auc"));
        for i in 0..batch.num_rows() {
            let (m, id, v) = (model.value(i), image_id.value(i), variant.value(i));
            let method: Method = method.map_or(Ok(Method::EigenCam), |c| c.value(i).parse())?;
            let obs = AucObs { deletion: del.value(i), insertion: ins.value(i) };
            let e = entry(out, m, id);
            let both = match method {
                Method::EigenCam => &mut e.perturbation,
                other => &mut e.baselines.entry(other).or_default().auc,
            };
            once(side(both, v.parse()?), obs, "perturbation", m, id, &format!(", variant {v}, method {method}"))?;
        }
    }
    Ok(())
}

/// Reads the baselines' rows of `wsol` into `out` (EigenCAM's are the `images` rows, read there).
pub fn wsol_baselines(batches: &[RecordBatch], out: &mut RunImages) -> Result<()> {
    for batch in batches {
        let (image_id, model) = (column::<Utf8Col>(batch, "image_id"), column::<Utf8Col>(batch, "model"));
        let (variant, method) = (column::<Utf8Col>(batch, "variant"), column::<Utf8Col>(batch, "method"));
        let (iou, top1_loc) = (column::<F32Col>(batch, "iou"), column::<BoolCol>(batch, "top1_loc"));
        let iou_curve = lists::<F32Col>(batch, "iou_curve");
        for i in 0..batch.num_rows() {
            let (m, id, v) = (model.value(i), image_id.value(i), variant.value(i));
            let method: Method = method.value(i).parse()?;
            if method == Method::EigenCam {
                continue;
            }
            let obs = WsolObs { iou: iou.value(i), top1_loc: top1_loc.value(i), box_hits: BoxHits::new(f32_list(&iou_curve, i)) };
            let slot = side(&mut entry(out, m, id).baselines.entry(method).or_default().wsol, v.parse()?);
            once(slot, obs, "wsol", m, id, &format!(", variant {v}, method {method}"))?;
        }
    }
    Ok(())
}

/// Marks the subset's images (an image of the subset without other rows still counts as one).
pub fn mark_subset(subset: &Subset, out: &mut RunImages) {
    for (model, ids) in &subset.by_model {
        for id in ids.keys() {
            entry(out, model, id).in_subset = true;
        }
    }
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
