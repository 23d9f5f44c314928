//! One streaming pass over each table of a run into the accumulators of `stats.rs`; nothing holds a
//! whole table in memory (the `images` table of a full ImageNet run is gigabytes). Also keeps the
//! CAMs Figure 3 draws.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use arrow::array::{Array, RecordBatch};

use tables::{column, read_table, BoolCol, F32Col, F64Col, I32Col, ListCol, Utf8Col};

use crate::stats::{AucAcc, ImageAcc, ImageObs, RmseAcc};

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

/// A (model, variant) over all images and over its pair's subset.
#[derive(Clone, Debug, Default)]
pub struct VariantAccs {
    pub all: ImageAcc,
    pub subset: ImageAcc,
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

#[derive(Default)]
pub struct ImagesPass {
    /// By (model, variant).
    pub variants: BTreeMap<(String, String), VariantAccs>,
    /// By model, then rank: the subset images with rank ≤ top_n.
    pub fig3: BTreeMap<String, BTreeMap<i32, Fig3Row>>,
}

pub fn images(run_dir: &Path, subset: &Subset, top_n: usize) -> Result<ImagesPass> {
    let mut out = ImagesPass::default();
    for batch in read_table(run_dir, "images")? {
        let (image_id, shard) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "shard"));
        let (model, variant) = (column::<Utf8Col>(&batch, "model"), column::<Utf8Col>(&batch, "variant"));
        let (top1, top5) = (column::<BoolCol>(&batch, "top1_correct"), column::<BoolCol>(&batch, "top5_correct"));
        let (infer_ms, cam_ms) = (column::<F32Col>(&batch, "infer_ms"), column::<F32Col>(&batch, "cam_ms"));
        let iou = column::<F32Col>(&batch, "iou");
        let entropy = column::<F64Col>(&batch, "act_entropy");
        let std = column::<F64Col>(&batch, "act_std");
        let sparsity = column::<F64Col>(&batch, "act_sparsity");
        let (cam_h, cam_w) = (column::<I32Col>(&batch, "cam_h"), column::<I32Col>(&batch, "cam_w"));
        let iou_curve = lists::<F32Col>(&batch, "iou_curve");
        let act_hist = lists::<F32Col>(&batch, "act_hist");
        let cam = lists::<F32Col>(&batch, "cam");
        let bbox = lists::<I32Col>(&batch, "box");
        for i in 0..batch.num_rows() {
            let obs = ImageObs {
                top1_correct: top1.value(i),
                top5_correct: top5.value(i),
                infer_ms: infer_ms.value(i),
                cam_ms: cam_ms.value(i),
                iou: iou.value(i),
                iou_curve: f32_list(&iou_curve, i),
                act_entropy: entropy.value(i),
                act_std: std.value(i),
                act_sparsity: sparsity.value(i),
                act_hist: f32_list(&act_hist, i),
            };
            let (m, v) = (model.value(i), variant.value(i));
            let accs = out.variants.entry((m.to_string(), v.to_string())).or_default();
            accs.all.add(&obs);
            let Some((rank, rmse)) = subset.get(m, image_id.value(i)) else { continue };
            accs.subset.add(&obs);
            if rank < 1 || rank as usize > top_n {
                continue;
            }
            let row = out.fig3.entry(m.to_string()).or_default().entry(rank).or_insert_with(|| Fig3Row {
                image_id: image_id.value(i).to_string(),
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
                iou: obs.iou,
                top1_correct: obs.top1_correct,
            };
            match v {
                "float" => row.float = Some(cam_row),
                "quantized" => row.quantized = Some(cam_row),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A pair's CAM distances over all images and over its subset (pairs ⋈ subset on model, image_id).
#[derive(Clone, Debug, Default)]
pub struct PairAccs {
    pub all: RmseAcc,
    pub subset: RmseAcc,
}

pub fn pairs(run_dir: &Path, subset: &Subset) -> Result<BTreeMap<String, PairAccs>> {
    let mut out: BTreeMap<String, PairAccs> = BTreeMap::new();
    for batch in read_table(run_dir, "pairs")? {
        let (image_id, model) = (column::<Utf8Col>(&batch, "image_id"), column::<Utf8Col>(&batch, "model"));
        let (rmse, flipped) = (column::<F32Col>(&batch, "rmse"), column::<F32Col>(&batch, "rmse_flipped"));
        for i in 0..batch.num_rows() {
            let accs = out.entry(model.value(i).to_string()).or_default();
            accs.all.add(rmse.value(i), flipped.value(i));
            if subset.get(model.value(i), image_id.value(i)).is_some() {
                accs.subset.add(rmse.value(i), flipped.value(i));
            }
        }
    }
    Ok(out)
}

/// Deletion and insertion AUCs by (model, variant).
pub fn perturbation(batches: &[RecordBatch]) -> BTreeMap<(String, String), AucAcc> {
    let mut out: BTreeMap<(String, String), AucAcc> = BTreeMap::new();
    for batch in batches {
        let (model, variant) = (column::<Utf8Col>(batch, "model"), column::<Utf8Col>(batch, "variant"));
        let (del, ins) = (column::<F32Col>(batch, "deletion_auc"), column::<F32Col>(batch, "insertion_auc"));
        for i in 0..batch.num_rows() {
            out.entry((model.value(i).to_string(), variant.value(i).to_string()))
                .or_default()
                .add(del.value(i), ins.value(i));
        }
    }
    out
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
