"""Shared helpers for the qcam model exporter.

Everything here is independent of the quantization API (see ``quant.py`` for that):
  * sample data loading with torchvision preprocessing (calibration + top-1),
  * BatchNorm statistics re-estimation for randomly initialised models,
  * wrapping a model so that it returns ``(logits, act)`` for TorchScript,
  * tracing, saving and verifying TorchScript files,
  * sha256 / manifest writing.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared sample sits beside the repository (../shared), in CI as on a developer machine.
DEFAULT_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data", "imagenet-val-sample"))
DATASET_NAME = "imagenet-val-sample"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


# --------------------------------------------------------------------------------------------
# Preprocessing / data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Preprocess:
    resize: int = 256
    crop: int = 224
    interpolation: str = "bilinear"  # "bilinear" | "bicubic"
    mean: Tuple[float, float, float] = tuple(IMAGENET_MEAN)
    std: Tuple[float, float, float] = tuple(IMAGENET_STD)

    def to_json(self) -> dict:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    def transform(self):
        from torchvision import transforms

        interp = {
            "bilinear": transforms.InterpolationMode.BILINEAR,
            "bicubic": transforms.InterpolationMode.BICUBIC,
        }[self.interpolation]
        return transforms.Compose(
            [
                transforms.Resize(self.resize, interpolation=interp),
                transforms.CenterCrop(self.crop),
                transforms.ToTensor(),
                transforms.Normalize(list(self.mean), list(self.std)),
            ]
        )


TORCHVISION_PREPROCESS = Preprocess()


class SampleData:
    """The ImageNet val sample in the Kaggle layout, read lazily, preprocessed tensors cached."""

    def __init__(self, root: Optional[str]):
        self.root = root
        self._cache: Dict[Preprocess, torch.Tensor] = {}
        self.ids: List[str] = []
        self.labels: List[int] = []
        if root is None:
            return
        sol = os.path.join(root, "LOC_val_solution.csv")
        syn = os.path.join(root, "LOC_synset_mapping.txt")
        if not (os.path.isfile(sol) and os.path.isfile(syn)):
            raise SystemExit(f"error: --data {root}: LOC_val_solution.csv / LOC_synset_mapping.txt not found")
        with open(syn) as f:
            wnids = [line.split()[0] for line in f if line.strip()]
        index = {w: i for i, w in enumerate(wnids)}
        rows = []
        with open(sol, newline="") as f:
            for r in csv.DictReader(f):
                img_id = r["ImageId"]
                path = self.image_path(img_id)
                if os.path.isfile(path):
                    rows.append((img_id, index[r["PredictionString"].split()[0]]))
        rows.sort()
        self.ids = [r[0] for r in rows]
        self.labels = [r[1] for r in rows]

    @property
    def available(self) -> bool:
        return bool(self.ids)

    def image_path(self, img_id: str) -> str:
        return os.path.join(self.root, "ILSVRC", "Data", "CLS-LOC", "val", img_id + ".JPEG")

    def tensors(self, pre: Preprocess) -> torch.Tensor:
        if pre not in self._cache:
            from PIL import Image

            tf = pre.transform()
            out = []
            for img_id in self.ids:
                with Image.open(self.image_path(img_id)) as im:
                    out.append(tf(im.convert("RGB")))  # grayscale / CMYK -> RGB
            self._cache[pre] = torch.stack(out)
        return self._cache[pre]

    def calibration(self, pre: Preprocess, count: int) -> Tuple[torch.Tensor, List[str]]:
        """The first ``count`` images in sorted id order (deterministic)."""
        count = min(count, len(self.ids))
        return self.tensors(pre)[:count], self.ids[:count]


def random_images(n: int, seed: int, size: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


# --------------------------------------------------------------------------------------------
# Random-weight models: BatchNorm re-estimation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def reestimate_bn(model: nn.Module, images: torch.Tensor, batch: int = 8) -> nn.Module:
    """Re-estimate BatchNorm running statistics (cumulative average) on ``images``.

    A randomly initialised net with the default BN stats (mean 0, var 1) lets activations
    collapse or blow up layer after layer: constant logits and denormal-slow float runs.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all batches
    was_training = model.training
    model.train()
    for i in range(0, images.shape[0], batch):
        model(images[i : i + batch])
    model.train(was_training)
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# (logits, act) wrappers
# --------------------------------------------------------------------------------------------
class HookedPair(nn.Module):
    """Runs ``model`` and returns ``(logits, output of cam_module)`` via a forward hook.

    Works for eager float and eager-quantized models alike (inside the quant/dequant stubs the
    captured activation is the quantized tensor). Trace only (hooks are not scriptable).
    """

    def __init__(self, model: nn.Module, cam_module_name: str):
        super().__init__()
        self.model = model
        self.cam_module_name = cam_module_name
        self._act: List[torch.Tensor] = []
        cam = dict(model.named_modules())[cam_module_name]
        cam.register_forward_hook(self._hook)

    def _hook(self, _m, _inp, out):
        self._act.append(out)

    def forward(self, x):
        self._act.clear()
        logits = self.model(x)
        act = self._act[-1]
        self._act.clear()
        return logits, act


# --------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Runtime:
    """What is done to a traced model: ``freeze`` before saving (``torch.jit.freeze``: parameters
    folded into the graph, BatchNorm into the convs), and how every consumer loads and feeds the
    saved file (``optimize_for_inference`` after loading, since its result cannot be saved;
    ``channels_last`` input). Recorded in the manifest's file entry (``entry``)."""

    freeze: bool = False
    optimize_for_inference: bool = False
    channels_last: bool = False

    def entry(self) -> dict:
        return {"frozen": self.freeze, "optimize_for_inference": self.optimize_for_inference,
                "channels_last": self.channels_last}


# Float models, measured per architecture (batch 32 and 16, 2 threads, interleaved; benches/
# PERFORMANCE.md): a frozen graph run through oneDNN's optimize_for_inference (prepacked convs, conv
# + ReLU fused) is the fastest for MobileNetV2 (0.35-0.39 of the as-exported forward, against 0.58-0.65
# frozen with channels_last input) and on a par for ResNet18; channels_last input adds nothing to it.
FLOAT_RUNTIME = Runtime(freeze=True, optimize_for_inference=True)
# Networks whose activations optimize_for_inference cannot fuse (EfficientNet-Lite0's separate
# ReLU6: 0.51-0.64 with it) are fastest frozen with channels_last input (0.47-0.52).
FROZEN_CHANNELS_LAST = Runtime(freeze=True, channels_last=True)
# Int8 models gain nothing from any of it (measured: same speed, bit-identical outputs): as traced.
PLAIN = Runtime()


def trace_and_save(module: nn.Module, path: str, quantized: bool, seed: int, runtime: Runtime = PLAIN) -> dict:
    """Trace with N=2 (then freeze, if ``runtime`` says so), save, reload as qcam loads it, and check
    N=1/2/5 against the eager module. Returns stats."""
    from loading import load_file, prepare

    module.eval()
    x2 = random_images(2, seed + 1)
    with torch.no_grad():
        traced = torch.jit.trace(module, x2, check_trace=False)
    if runtime.freeze:
        traced = torch.jit.freeze(traced.eval())
    torch.jit.save(traced, path)
    entry = runtime.entry()
    loaded = load_file(path, entry)
    stats = {}
    for n in (1, 2, 5):
        x = random_images(n, seed + 10 + n)
        with torch.no_grad():
            el, ea = module(x)
            tl, ta = loaded(prepare(x, entry))
        if tuple(tl.shape) != (n, 1000):
            raise RuntimeError(f"{path}: logits shape {tuple(tl.shape)} for N={n}")
        if ta.shape[0] != n or ta.dim() != 4:
            raise RuntimeError(f"{path}: act shape {tuple(ta.shape)} for N={n}")
        if quantized:
            if not ta.is_quantized or ta.dtype != torch.quint8:
                raise RuntimeError(f"{path}: act is not a quint8 quantized tensor ({ta.dtype})")
            if ta.qscheme() != torch.per_tensor_affine:
                raise RuntimeError(f"{path}: act qscheme {ta.qscheme()} (want per_tensor_affine)")
            if not (ta.q_scale() == ea.q_scale() and ta.q_zero_point() == ea.q_zero_point()):
                raise RuntimeError(f"{path}: act qparams differ from eager")
            dact = (ta.int_repr().int() - ea.int_repr().int()).abs().max().item()
        else:
            if ta.is_quantized:
                raise RuntimeError(f"{path}: float act is quantized")
            dact = (ta - ea).abs().max().item()
        dlog = (tl - el).abs().max().item()
        if dlog > 1e-3 or dact > (1 if quantized else 1e-3):
            raise RuntimeError(f"{path}: TorchScript differs from eager for N={n}: logits {dlog}, act {dact}")
        stats[n] = (dlog, dact)
    stats["act_shape"] = list(ta.shape[1:])
    if quantized:
        stats["q_scale"] = ta.q_scale()
        stats["q_zero_point"] = ta.q_zero_point()
    return stats


@torch.no_grad()
def top1(module, images: torch.Tensor, labels: Sequence[int], batch: int = 25) -> float:
    correct = 0
    for i in range(0, images.shape[0], batch):
        logits, _ = module(images[i : i + batch])
        pred = logits.argmax(1)
        correct += (pred == torch.tensor(labels[i : i + batch])).sum().item()
    return correct / images.shape[0]


@torch.no_grad()
def ms_per_image(module, images: torch.Tensor, reps: int = 20, warmup: int = 3) -> float:
    x = images[:1]
    for _ in range(warmup):
        module(x)
    t = time.perf_counter()
    for i in range(reps):
        module(images[i % images.shape[0] : i % images.shape[0] + 1])
    return (time.perf_counter() - t) / reps * 1000.0


@torch.no_grad()
def check_not_constant(module, images: torch.Tensor, what: str) -> float:
    logits, _ = module(images[:8])
    spread = (logits - logits.mean(0, keepdim=True)).abs().max().item()
    if not spread > 1e-3 or not torch.isfinite(logits).all():
        raise RuntimeError(f"{what}: logits are constant/non-finite across images (spread {spread})")
    return spread


# --------------------------------------------------------------------------------------------
# Files / manifest
# --------------------------------------------------------------------------------------------
def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entry(dirpath: str, name: str, weights: str) -> dict:
    p = os.path.join(dirpath, name)
    return {"file": name, "bytes": os.path.getsize(p), "sha256": sha256_file(p), "weights": weights}


# The manifest format this exporter writes (types/src/manifest.rs: MANIFEST_FORMAT).
MANIFEST_FORMAT = 2


def manifest_is_current(dirpath: str, frozen: bool) -> bool:
    """True when ``dirpath`` holds a complete export that this exporter would write again: the same
    manifest format, the float file frozen or not as asked (``--plain`` is not), and files whose
    sizes and sha256 match. An export by an older exporter is redone, not kept."""
    mp = os.path.join(dirpath, "manifest.json")
    if not os.path.isfile(mp):
        return False
    try:
        with open(mp) as f:
            m = json.load(f)
        if m.get("format") != MANIFEST_FORMAT or bool(m["float"].get("frozen")) != frozen:
            return False
        for side in ("float", "quantized"):
            e = m[side]
            p = os.path.join(dirpath, e["file"])
            if not os.path.isfile(p) or os.path.getsize(p) != e["bytes"] or sha256_file(p) != e["sha256"]:
                return False
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def versions() -> dict:
    import torchvision

    try:
        import timm

        timm_v = timm.__version__
    except ImportError:  # pragma: no cover
        timm_v = None
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm_v}
