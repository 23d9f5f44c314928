"""The peer: the paper's pipeline as its authors would write it in Python, timed on the same images,
the same TorchScript models and the same cores as `qcam run`.

    .venv/bin/python benches/peer/pipeline.py --data ../shared/data/imagenet-val-sample \
        --models artifacts/models --pairs efficientnet_lite0,mobilenet_v2_qnnpack,resnet18_random \
        --threads 2 --batch 16 --out peer.json

Per pair, per batch of `--batch` images (sorted by id):
  * PIL decode + torchvision `Resize/CenterCrop/ToTensor/Normalize` as the manifest says;
  * the float and the quantized TorchScript model (quantized engine from the manifest, set before
    loading and forwarding). Our models return `(logits, act)`: `act` replaces the forward hook
    pytorch-grad-cam's `ActivationsAndGradients` would register on the CAM layer (TorchScript
    modules take no Python hooks), and it saves the second forward `EigenCAM.__call__` would run;
  * EigenCAM exactly as pytorch-grad-cam 1.5.7 computes it: `get_2d_projection`
    (pytorch_grad_cam/utils/svd_on_activations.py: centre the (h·w)×C matrix, `np.linalg.svd(...,
    full_matrices=True)`, project on `VT[0]`), `np.maximum(cam, 0)` + `scale_cam_image(cam,
    (224, 224))` per layer, then `aggregate_multi_layers` (max(·,0), mean over layers,
    `scale_cam_image`) — the library functions themselves, called on `act`. The SPEC's `mean` sign
    rule is applied to the projection (2 numpy lines) so both tools compute the same maps;
  * SPEC §4 RMSE (and the flipped one) in numpy, SPEC §6 WSOL with cv2.connectedComponentsWithStats
    (box at τ = 0.2 and the 100-threshold IoU curve, wsolevaluation's protocol), SPEC §7 statistics
    in numpy; rows written to Parquet with pyarrow at the end.
Stage times are accumulated separately. The run also times a thin SVD (`full_matrices=False`) of
the same matrices outside the wall clock (`svd_thin_s`, against `svd_full_s`), to show how much of the peer's time is the library's
full `VT` (1280×1280 for a 1280-channel layer).

Each file is loaded and fed as its manifest entry says (exporter/loading.py: optimize_for_inference
and channels_last input for the float models), the forwards qcam runs, so qcam's lead is its
pipeline's, not a load pass (`--load plain`: `torch.jit.load` alone).

Deletion/insertion: the first `--perturb-images` images of each pair and variant go through
RISE's `CausalMetric.single_run` as ported in tests/reference/perturb_rise.py (RISE's loop; the
model scores the stacked images of a curve in batches of `--perturb-batch`), on that variant's cam.
Each call also runs RISE's own unperturbed forward to pick the class. Seconds per (image, variant).
With `--subset-fraction F` they are instead the job's own: per pair, the top ceil(F·n) images by
RMSE (ties by image id, SPEC §4), both variants, and `job_s` is the whole job end to end (phase 1,
the tables, then deletion/insertion of the subsets), what `qcam run` of the same job does.
"""
import argparse
import json
import math
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--data", required=True, help="Kaggle-layout ImageNet val folder")
ap.add_argument("--models", required=True)
ap.add_argument("--pairs", required=True)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--limit", type=int, default=None, help="first N images (sorted by id)")
ap.add_argument("--perturb-images", type=int, default=1)
ap.add_argument("--subset-fraction", type=float, default=None,
                help="deletion/insertion on each pair's top fraction by RMSE instead of its first --perturb-images")
ap.add_argument("--perturb-batch", type=int, default=32, help="perturbed images per forward (the job's)")
ap.add_argument("--load", choices=["manifest", "plain"], default="manifest")
ap.add_argument("--steps", type=int, default=100)
ap.add_argument("--out", required=True, help="JSON report")
ap.add_argument("--parquet", default=None, help="folder for the rows (default: beside --out)")
args = ap.parse_args()

# Same cores as qcam: every thread pool sized before the libraries start them.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402
from torchvision import transforms  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

torch.set_num_threads(args.threads)
cv2.setNumThreads(args.threads)
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
import perturb_rise  # noqa: E402  (RISE's CausalMetric, ported)

sys.path.insert(0, os.path.join(HERE, "..", "..", "exporter"))
import loading  # noqa: E402

perturb_rise.BATCH = args.perturb_batch


def load_side(mdir, man, side):
    if args.load == "plain":
        return torch.jit.load(os.path.join(mdir, man[side]["file"])).eval(), lambda x: x
    return loading.load(mdir, man, side), lambda x, e=man[side]: loading.prepare(x, e)


def subset_size(n, fraction):
    """qcam's k = ceil(fraction · n), the fraction read as the decimal it was written as."""
    x = fraction * n
    k = round(x) if abs(x - round(x)) <= 1e-9 * max(round(x), 1) else math.ceil(x)
    return min(max(k, 0), n)


# ------------------------------------------------------------------ data (SPEC §1)
def list_kaggle(root):
    wnids = sorted(l.split()[0] for l in open(os.path.join(root, "LOC_synset_mapping.txt")) if l.strip())
    cls = {w: i for i, w in enumerate(wnids)}
    rows = {}
    import csv

    with open(os.path.join(root, "LOC_val_solution.csv")) as f:
        for r in csv.DictReader(f):
            t = r["PredictionString"].split()
            boxes = [tuple(int(v) for v in t[i + 1:i + 5]) for i in range(0, len(t), 5)]
            rows[r["ImageId"]] = (cls[t[0]], boxes)
    val = os.path.join(root, "ILSVRC", "Data", "CLS-LOC", "val")
    files = sorted(f for f in os.listdir(val) if f.rsplit(".", 1)[-1].lower() in ("jpeg", "jpg", "png"))
    items = []
    for f in files:
        iid = f.rsplit(".", 1)[0]
        if iid in rows:
            items.append((iid, os.path.join(val, f), *rows[iid]))
    return items


def crop_boxes(boxes, w, h, resize, crop):
    # torchvision Resize(int): shorter side -> resize, the other int(resize * long / short)
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nh, nw = resize, int(resize * w / h)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    sx, sy = nw / w, nh / h
    out = []
    for x0, y0, x1, y1 in boxes:
        b = [min(max(math.floor(x0 * sx) - left, 0), crop - 1), min(max(math.floor(y0 * sy) - top, 0), crop - 1),
             min(max(math.floor(x1 * sx) - left, 0), crop - 1), min(max(math.floor(y1 * sy) - top, 0), crop - 1)]
        if b[2] > b[0] and b[3] > b[1]:
            out.append(b)
    return out


# ------------------------------------------------------------------ per-image steps
def eigencam_maps(act, size):
    """pytorch-grad-cam EigenCAM on one layer's activation batch (N, C, h, w) -> projections,
    cam_lo (N, h, w) and cam (N, size, size)."""
    global svd_full_s
    t = time.perf_counter()
    proj = get_2d_projection(act)  # full SVD per image, as the library does
    svd_full_s += time.perf_counter() - t
    # SPEC §3 `mean` sign: flip when sum_i p_i * m_i < 0, m = channel mean of the uncentred act
    m = act.mean(axis=1)
    flip = (proj * m).reshape(len(proj), -1).sum(axis=1) < 0
    proj[flip] *= -1
    lo = scale_cam_image(np.maximum(proj, 0))  # per-layer min-max (what the library resizes next)
    per_layer = scale_cam_image(np.maximum(proj, 0), (size, size))[:, None, :]  # compute_cam_per_layer
    cam = scale_cam_image(np.maximum(per_layer, 0).mean(axis=1))  # aggregate_multi_layers
    return proj, lo, cam


def cam_from_projection(proj, size):
    per_layer = scale_cam_image(np.maximum(proj, 0), (size, size))[:, None, :]
    return scale_cam_image(np.maximum(per_layer, 0).mean(axis=1))


def thin_projection(act):
    out = []
    for a in act:
        r = a.reshape(a.shape[0], -1).T
        r = r - r.mean(axis=0)
        _, _, vt = np.linalg.svd(r, full_matrices=False)
        out.append(r @ vt[0])
    return out


def rmse(a, b):
    ga = np.round(255 * a).astype(np.int64)
    gb = np.round(255 * b).astype(np.int64)
    return float(np.sqrt(((ga - gb) ** 2).mean()))


def iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def components(g, cut):
    mask = (g > cut).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return [(int(s[cv2.CC_STAT_AREA]), (int(s[0]), int(s[1]), int(s[0] + s[2] - 1), int(s[1] + s[3] - 1)))
            for s in stats[1:n]]


def localize(cam, gt, threshold=0.2):
    g = np.floor(255 * cam).astype(np.uint8)
    mg = int(g.max())
    comps = components(g, math.floor(threshold * mg))
    if comps:
        box = max(comps, key=lambda c: c[0])[1]
        box_iou = max((iou(box, t) for t in gt), default=0.0)
    else:
        box, box_iou = (0, 0, 0, 0), 0.0
    curve = []
    for j in range(100):
        cs = components(g, math.floor(j / 100 * mg))
        curve.append(max((iou(c[1], t) for c in cs for t in gt), default=0.0))
    return box, box_iou, curve


def act_stats(a, scale, zp):
    lo = (0 - zp) * scale
    bins = np.clip(np.round((a.astype(np.float64) - lo) / scale), 0, 255).astype(np.int64)
    hist = np.bincount(bins.ravel(), minlength=256) / a.size
    return {"act_mean": float(a.mean(dtype=np.float64)), "act_std": float(a.std(dtype=np.float64)),
            "act_sparsity": float(100.0 * (a == 0).sum() / a.size),
            "act_entropy": float(-(hist * np.log2(hist + 1e-10)).sum()), "act_hist": hist.astype(np.float32)}


# ------------------------------------------------------------------ run
items = list_kaggle(args.data)
if args.limit:
    items = items[:args.limit]
pairs = args.pairs.split(",")
stages = dict(load_s=0.0, decode_s=0.0, forward_s=0.0, cam_s=0.0, compare_s=0.0, wsol_s=0.0, stats_s=0.0,
              write_s=0.0)
cam_thin_s = svd_full_s = 0.0
image_rows, pair_rows, keep, kept_models = [], [], {}, {}
per_pair = {}
t_wall = time.perf_counter()
for name in pairs:
    t0 = time.perf_counter()
    mdir = os.path.join(args.models, name)
    man = json.load(open(os.path.join(mdir, "manifest.json")))
    pre = man["preprocess"]
    engine = man["quantization"]["engine"]
    interp = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[pre["interpolation"]]
    tf = transforms.Compose([transforms.Resize(pre["resize"], interpolation=interp),
                             transforms.CenterCrop(pre["crop"]), transforms.ToTensor(),
                             transforms.Normalize(pre["mean"], pre["std"])])
    crop = pre["crop"]
    fm, ffeed = load_side(mdir, man, "float")
    loading.set_engine(man)
    qm, qfeed = load_side(mdir, man, "quantized")
    feeds = {"float": ffeed, "quantized": qfeed}
    candidates = {}  # image id -> (input, float cam, quantized cam), for the subset
    stages["load_s"] += time.perf_counter() - t0
    pstart = time.perf_counter()
    fwd = {"float": 0.0, "quantized": 0.0}
    for b in range(0, len(items), args.batch):
        chunk = items[b:b + args.batch]
        t = time.perf_counter()
        xs, gts = [], []
        for iid, path, label, boxes in chunk:
            im = Image.open(path).convert("RGB")
            gts.append(crop_boxes(boxes, im.size[0], im.size[1], pre["resize"], crop))
            xs.append(tf(im))
        x = torch.stack(xs)
        stages["decode_s"] += time.perf_counter() - t
        outs = {}
        with torch.no_grad():
            for variant, m in (("float", fm), ("quantized", qm)):
                t = time.perf_counter()
                logits, act = m(feeds[variant](x))
                qp = None
                if act.is_quantized:
                    qp = (act.q_scale(), act.q_zero_point())
                    act = act.dequantize()
                act = torch.nan_to_num(act, nan=0.0)
                outs[variant] = (logits.float().numpy(), act.numpy(), qp)
                dt = time.perf_counter() - t
                fwd[variant] += dt
                stages["forward_s"] += dt
        t = time.perf_counter()
        maps = {v: eigencam_maps(outs[v][1], crop) for v in outs}
        stages["cam_s"] += time.perf_counter() - t
        t = time.perf_counter()
        for v in outs:
            thin_projection(outs[v][1])
        cam_thin_s += time.perf_counter() - t
        scale, zp = outs["quantized"][2] or (1.0, 0)
        for i, (iid, path, label, boxes) in enumerate(chunk):
            t = time.perf_counter()
            cf, cq = maps["float"][2][i], maps["quantized"][2][i]
            flipped = cam_from_projection(-maps["quantized"][0][i:i + 1], crop)[0]
            pair_rows.append({"image_id": iid, "model": name, "rmse": rmse(cq, cf), "rmse_flipped": rmse(flipped, cf),
                              "top1_agree": bool(outs["float"][0][i].argmax() == outs["quantized"][0][i].argmax())})
            stages["compare_s"] += time.perf_counter() - t
            for v in ("float", "quantized"):
                logits, act, _ = outs[v]
                t = time.perf_counter()
                box, box_iou, curve = localize(maps[v][2][i], gts[i])
                stages["wsol_s"] += time.perf_counter() - t
                t = time.perf_counter()
                st = act_stats(act[i], scale, zp)
                stages["stats_s"] += time.perf_counter() - t
                lg = logits[i]
                top5 = np.argsort(-lg, kind="stable")[:5]
                p = np.exp(lg - lg.max())
                p /= p.sum()
                image_rows.append({"image_id": iid, "label": label, "model": name, "variant": v,
                                   "top5": top5.astype(np.int32).tolist(), "top5_prob": p[top5].astype(np.float32).tolist(),
                                   "top1_correct": bool(top5[0] == label), "top5_correct": bool(label in top5),
                                   "cam": maps[v][1][i].ravel().tolist(), "box": list(box), "iou": box_iou,
                                   "iou_curve": curve, **{k: (v2.tolist() if isinstance(v2, np.ndarray) else v2)
                                                          for k, v2 in st.items()}})
                if args.subset_fraction is None and b == 0 and i < args.perturb_images:
                    keep[(name, v, i)] = (x[i:i + 1].clone(), maps[v][2][i].copy(), iid)
            if args.subset_fraction is not None:
                candidates[iid] = (x[i:i + 1].clone(), cf.copy(), cq.copy())
    if args.subset_fraction is not None:
        ranked = sorted((r for r in pair_rows if r["model"] == name), key=lambda r: (-r["rmse"], r["image_id"]))
        for rank, r in enumerate(ranked[:subset_size(len(ranked), args.subset_fraction)]):
            x1, cf1, cq1 = candidates[r["image_id"]]
            keep[(name, "float", rank)] = (x1, cf1, r["image_id"])
            keep[(name, "quantized", rank)] = (x1, cq1, r["image_id"])
        candidates.clear()
    per_pair[name] = {"engine": engine, "wall_s": time.perf_counter() - pstart,
                      "forward_float_s": fwd["float"], "forward_quantized_s": fwd["quantized"]}
    if args.perturb_images or args.subset_fraction:
        kept_models[name] = (fm, qm, engine, feeds)

t = time.perf_counter()
out_dir = args.parquet or os.path.join(os.path.dirname(os.path.abspath(args.out)), "peer-tables")
os.makedirs(out_dir, exist_ok=True)
pq.write_table(pa.Table.from_pylist(image_rows), os.path.join(out_dir, "images.parquet"))
pq.write_table(pa.Table.from_pylist(pair_rows), os.path.join(out_dir, "pairs.parquet"))
stages["write_s"] += time.perf_counter() - t
wall = time.perf_counter() - t_wall - cam_thin_s  # the extra thin SVDs are not the peer's work

# ------------------------------------------------------------------ deletion / insertion (RISE)
perturb = []
step = math.ceil(224 * 224 / args.steps)
for name in pairs:
    if name not in kept_models:
        continue
    fm, qm, engine, feeds = kept_models[name]
    for (pname, v, i), (x, cam, iid) in sorted(keep.items()):
        if pname != name:
            continue
        m = fm if v == "float" else qm
        if v == "quantized":
            torch.backends.quantized.engine = engine
        feed = feeds[v]
        model = lambda inp, m=m, feed=feed: torch.softmax(m(feed(inp))[0], dim=1)  # noqa: E731  RISE scores probabilities
        hw = x.shape[-1] * x.shape[-2]
        t = time.perf_counter()
        d_scores, _ = perturb_rise.CausalMetric(model, "del", step, perturb_rise.zero, hw).single_run(x.clone(), cam)
        t_del = time.perf_counter() - t
        t = time.perf_counter()
        i_scores, _ = perturb_rise.CausalMetric(model, "ins", step, perturb_rise.blur, hw).single_run(x.clone(), cam)
        t_ins = time.perf_counter() - t
        perturb.append({"pair": name, "variant": v, "image_id": iid, "deletion_s": t_del, "insertion_s": t_ins,
                        "total_s": t_del + t_ins, "forwards": len(d_scores) + len(i_scores) + 2,
                        "deletion_auc": float(perturb_rise.auc(d_scores)),
                        "insertion_auc": float(perturb_rise.auc(i_scores))})
        print(f"peer: {name} {v} {iid}: deletion {t_del:.2f} s, insertion {t_ins:.2f} s", file=sys.stderr)

job_s = time.perf_counter() - t_wall - cam_thin_s
n = len(items)
report = {
    "images": n, "pairs": pairs, "threads": args.threads, "batch": args.batch,
    "wall_s": wall, "images_per_s": n / wall, "stages": stages, "per_pair": per_pair,
    "svd_full_s": svd_full_s, "svd_thin_s": cam_thin_s,
    # The same run with a thin SVD in get_2d_projection instead of the library's full one
    # (derived: wall − full-SVD projection time + thin-SVD projection time of the same matrices).
    "images_per_s_thin_svd": n / (wall - svd_full_s + cam_thin_s),
    "perturb": perturb,
    "perturb_s_per_image_variant": (sum(p["total_s"] for p in perturb) / len(perturb)) if perturb else None,
    "perturb_batch": args.perturb_batch, "subset_fraction": args.subset_fraction, "load": args.load,
    # Phase 1, its tables, then deletion/insertion: the whole job (with --subset-fraction).
    "job_s": job_s,
    "versions": {"torch": torch.__version__, "numpy": np.__version__, "cv2": cv2.__version__},
}
os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
print(f"peer: whole run {job_s:.1f} s; phase 1: {n} images x {len(pairs)} pairs in {wall:.1f} s ({n / wall:.2f} images/s); stages "
      + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()), file=sys.stderr)
