"""Pair registry. Adding a pair = one function decorated with ``@register(...)``.

A builder gets an ``ExportContext`` and returns a ``PairBuild`` holding two eager modules that
return ``(logits, act)``; export.py does tracing, verification, evaluation and the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch.nn as nn

from common import FLOAT_RUNTIME, Preprocess, Runtime, SampleData


@dataclass
class ExportContext:
    random_weights: bool
    seed: int
    data: SampleData
    calib_images: int
    efficientnet_variant: str = "faithful"
    # Engine of the pairs this exporter quantizes itself (export.py --ptq-engine).
    ptq_engine: str = "x86"
    measure_variants: bool = False

    def calibration(self, pre: Preprocess):
        """(images, image ids) for calibration; random-normal images when no data is available."""
        if self.data.available:
            return self.data.calibration(pre, self.calib_images)
        from common import random_images

        return random_images(self.calib_images, self.seed + 100), []

    def calibration_fallback_json(self) -> dict:
        return {"dataset": f"random-normal:seed={self.seed + 100}", "count": self.calib_images, "image_ids": []}

    def calibration_info(self, ids) -> dict:
        return calibration_json(self.data, ids) if ids else self.calibration_fallback_json()

    def bn_images(self, pre: Preprocess, n: int = 32):
        """Images for BatchNorm re-estimation of random-weight models (+ a label for provenance)."""
        if self.data.available:
            return self.data.calibration(pre, n)[0], f"{n} sample images"
        from common import random_images

        return random_images(n, self.seed + 200), f"{n} random-normal images"


@dataclass
class PairBuild:
    name: str
    architecture: str
    preprocess: Preprocess
    cam_layer: str
    engine: str
    method: str
    float_module: nn.Module  # forward(x) -> (logits, act)
    quant_module: nn.Module  # forward(x) -> (logits, quantized act)
    float_weights: str
    quant_weights: str
    calibration: Optional[dict] = None
    random: bool = False
    notes: Dict[str, object] = field(default_factory=dict)
    # What is done to the float file and how it is loaded (common.Runtime); int8 files stay plain.
    float_runtime: Runtime = FLOAT_RUNTIME


# name -> builder(ctx) ; resolvers map a requested name to a concrete one (e.g. *_random)
BUILDERS: Dict[str, Callable[[ExportContext], PairBuild]] = {}
RESOLVERS: Dict[str, Callable[[ExportContext], str]] = {}


def register(name: str, resolver: Optional[Callable[[ExportContext], str]] = None):
    def deco(fn):
        BUILDERS[name] = fn
        if resolver is not None:
            RESOLVERS[name] = resolver
        return fn

    return deco


def resolve(name: str, ctx: ExportContext) -> str:
    if name in RESOLVERS:
        return RESOLVERS[name](ctx)
    if name not in BUILDERS:
        raise SystemExit(f"error: unknown pair {name!r}; known: {', '.join(sorted(set(BUILDERS) | set(RESOLVERS)))}")
    return name


def calibration_json(data: SampleData, ids: List[str]) -> dict:
    from common import DATASET_NAME

    return {"dataset": DATASET_NAME, "count": len(ids), "image_ids": list(ids)}


# import builders so that they register themselves
from . import efficientnet_lite0  # noqa: E402,F401
from . import mobilenet_v2_qnnpack  # noqa: E402,F401
from . import torchvision_models  # noqa: E402,F401
