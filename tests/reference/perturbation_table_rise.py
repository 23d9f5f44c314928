"""Independent reference for qcam's `perturbation` table: RISE's `CausalMetric` in Python, per row.

Usage: perturbation_table_rise.py RUN_DIR SAMPLE_DIR MODELS_DIR OUT_JSON

For each (image, model, variant, method) row qcam wrote, this rebuilds everything from the inputs
qcam started from, with other code: the image through torchvision's transforms (per the pair's
manifest), the model through `torch.jit.load` (and the load pass its manifest entry names), the map from the `images` table's stored h×w `cam`
upsampled as SPEC §3 step 5 says (`F.interpolate`, bilinear, align_corners=False, then relu and
min-max), and the target as the variant's argmax on the unperturbed image. Then RISE's deletion
(zero substrate) and insertion (blur substrate) loops from `perturb_rise.py`, with the SPEC's
`steps`, and their AUCs. Baseline rows take their order from `baselines_np.py` instead of the
CAM: the centred Gaussian map, or the seeded random order (as a map whose stable descending
argsort is that order). It writes, per row, qcam's and RISE's AUCs and targets; the Rust test
asserts on them. Nothing here asserts.
"""
import json
import math
import os
import sys

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import duckdb
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

sys.path.insert(0, os.path.dirname(__file__))
import perturb_rise as rise  # noqa: E402
import baselines_np  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "exporter"))
import loading  # noqa: E402  (loads and feeds each file as its manifest says, as qcam does)

INTERP = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}


def transform(pre):
    return T.Compose([
        T.Resize(pre["resize"], interpolation=INTERP[pre["interpolation"]]),
        T.CenterCrop(pre["crop"]),
        T.ToTensor(),
        T.Normalize(pre["mean"], pre["std"]),
    ])


def full_cam(cam_lo, h, w, crop):
    t = torch.tensor(cam_lo, dtype=torch.float32).reshape(1, 1, h, w)
    up = F.interpolate(t, size=(crop, crop), mode="bilinear", align_corners=False).relu()[0, 0]
    return ((up - up.min()) / (up.max() - up.min() + 1e-7)).numpy()


def main(run_dir, sample_dir, models_dir, out_json):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    run = json.load(open(os.path.join(run_dir, "run.json")))
    steps = run["job"]["perturbation"]["steps"]
    sigma, seed = run["job"]["baselines"]["gaussian_sigma"], run["job"]["baselines"]["seed"]
    rows = duckdb.sql(f"""
        select p.image_id, p.model, p.variant, p.method, p.target, p.deletion_auc, p.insertion_auc,
               i.cam, i.cam_h, i.cam_w
        from '{run_dir}/perturbation/*.parquet' p
        join '{run_dir}/images/*.parquet' i using (image_id, model, variant)
        order by p.model, p.image_id, p.method, p.variant""").fetchall()
    models, results = {}, []
    for image_id, model, variant, method, target, del_auc, ins_auc, cam, h, w in rows:
        key = (model, variant)
        if key not in models:
            manifest = json.load(open(os.path.join(models_dir, model, "manifest.json")))
            loading.set_engine(manifest)
            m = loading.load(os.path.join(models_dir, model), manifest, variant)
            models[key] = (m, manifest["preprocess"], manifest)
        m, pre, manifest = models[key]
        loading.set_engine(manifest)
        crop = pre["crop"]
        x = transform(pre)(Image.open(os.path.join(sample_dir, "ILSVRC/Data/CLS-LOC/val", image_id + ".JPEG")).convert("RGB"))[None]
        if method == "eigencam":
            expl = full_cam(cam, h, w, crop)[None]
        elif method == "gaussian":
            expl = baselines_np.gaussian_map(crop, sigma)[None]
        else:
            assert method == "random", method
            expl = baselines_np.rank_map(baselines_np.random_order(crop * crop, seed, image_id)).reshape(1, crop, crop)
        step = math.ceil(crop * crop / steps)
        entry = manifest[variant]
        model = lambda b: torch.softmax(m(loading.prepare(b, entry))[0], dim=1)  # noqa: E731 (scores are probabilities)
        out = {"image_id": image_id, "model": key[0], "variant": variant, "method": method, "qcam_target": target,
               "qcam_deletion_auc": del_auc, "qcam_insertion_auc": ins_auc}
        for mode, substrate in (("del", rise.zero), ("ins", rise.blur)):
            metric = rise.CausalMetric(model, mode, step, substrate, crop * crop)
            scores, c = metric.single_run(x, expl)
            out[f"rise_{mode}_auc"] = float(rise.auc(scores))
            out["rise_target"] = c
            out[f"rise_{mode}_points"] = len(scores)
        results.append(out)
    with open(out_json, "w") as f:
        json.dump({"steps": steps, "rows": results}, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
