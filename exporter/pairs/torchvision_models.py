"""The paper's torchvision pairs: real quantized weights + their ``meta["unquantized"]`` float
weights when present in the torch hub cache, else (with --random-weights) the same architecture
with a fixed seed, re-estimated BN statistics and calibrated post-training static quantization."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

import quant
from common import TORCHVISION_PREPROCESS, HookedPair, reestimate_bn
from . import ExportContext, PairBuild, register


@dataclass(frozen=True)
class TVSpec:
    name: str
    weights_enum: str  # torchvision.models.quantization.<Enum>.<member>
    engine: str
    method: str  # method of torchvision's real quantized weights
    cam_layer: str


SPECS = {
    "mobilenet_v2": TVSpec("mobilenet_v2", "MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1", "qnnpack", "qat", "features.18"),
    "mobilenet_v3_large": TVSpec("mobilenet_v3_large", "MobileNet_V3_Large_QuantizedWeights.IMAGENET1K_QNNPACK_V1", "qnnpack", "qat", "features.16"),
    "resnet18": TVSpec("resnet18", "ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1", "fbgemm", "ptq-static-eager", "layer4"),
    "shufflenet_v2_x0_5": TVSpec("shufflenet_v2_x0_5", "ShuffleNet_V2_X0_5_QuantizedWeights.IMAGENET1K_FBGEMM_V1", "fbgemm", "ptq-static-eager", "conv5"),
    "shufflenet_v2_x1_0": TVSpec("shufflenet_v2_x1_0", "ShuffleNet_V2_X1_0_QuantizedWeights.IMAGENET1K_FBGEMM_V1", "fbgemm", "ptq-static-eager", "conv5"),
}


def _weights(spec: TVSpec):
    import torchvision.models.quantization as tvq

    enum_name, member = spec.weights_enum.split(".")
    return getattr(getattr(tvq, enum_name), member)


def hub_checkpoint(url: str) -> str:
    """Where torch.hub's load_state_dict_from_url would cache ``url`` (honours TORCH_HOME)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def weights_available(spec: TVSpec) -> bool:
    qw = _weights(spec)
    return all(os.path.isfile(hub_checkpoint(w.url)) for w in (qw, qw.meta["unquantized"]))


def missing_message(spec: TVSpec) -> str:
    qw = _weights(spec)
    files = [hub_checkpoint(w.url) for w in (qw, qw.meta["unquantized"])]
    return (f"error: pretrained weights for {spec.name} are not in the torch hub cache "
            f"(need {', '.join(files)}; set TORCH_HOME or download them with internet access), "
            f"or pass --random-weights to export {spec.name}_random")


def _real(spec: TVSpec) -> Callable[[ExportContext], PairBuild]:
    def build(ctx: ExportContext) -> PairBuild:
        import torchvision.models as tvm
        import torchvision.models.quantization as tvq

        if not weights_available(spec):  # never let the builders try to download
            raise SystemExit(missing_message(spec))
        qw = _weights(spec)
        fw = qw.meta["unquantized"]
        quant.set_engine(spec.engine)
        qmodel = getattr(tvq, spec.name)(weights=qw, quantize=True).eval()
        fmodel = getattr(tvm, spec.name)(weights=fw).eval()
        return PairBuild(
            name=spec.name,
            architecture=f"torchvision {spec.name}",
            preprocess=TORCHVISION_PREPROCESS,
            cam_layer=spec.cam_layer,
            engine=spec.engine,
            method=spec.method,
            float_module=HookedPair(fmodel, spec.cam_layer),
            quant_module=HookedPair(qmodel, spec.cam_layer),
            float_weights=f"pretrained:{type(fw).__name__}.{fw.name}",
            quant_weights=f"pretrained:{type(qw).__name__}.{qw.name}",
            calibration=None,
        )

    return build


def _random(spec: TVSpec) -> Callable[[ExportContext], PairBuild]:
    def build(ctx: ExportContext) -> PairBuild:
        import copy

        import torchvision.models.quantization as tvq

        torch.manual_seed(ctx.seed)
        # Quantizable* float architecture == torchvision float architecture (same state dict keys)
        fmodel = getattr(tvq, spec.name)(weights=None, quantize=False).eval()
        bn_x, bn_what = ctx.bn_images(TORCHVISION_PREPROCESS)
        reestimate_bn(fmodel, bn_x)
        qmodel = copy.deepcopy(fmodel)
        calib, ids = ctx.calibration(TORCHVISION_PREPROCESS)
        # Our own PTQ, not the published int8 weights: packed for the fastest engine here.
        quant.ptq_eager_torchvision(qmodel, ctx.ptq_engine, calib)
        how = f"random:{ctx.seed} (BN statistics re-estimated on {bn_what})"
        return PairBuild(
            name=f"{spec.name}_random",
            architecture=f"torchvision {spec.name}",
            preprocess=TORCHVISION_PREPROCESS,
            cam_layer=spec.cam_layer,
            engine=ctx.ptq_engine,
            method="ptq-static-eager",
            float_module=HookedPair(fmodel, spec.cam_layer),
            quant_module=HookedPair(qmodel, spec.cam_layer),
            float_weights=how,
            quant_weights=how + ", ptq",
            calibration=ctx.calibration_info(ids),
            random=True,
        )

    return build


def _resolver(spec: TVSpec):
    def resolve(ctx: ExportContext) -> str:
        if weights_available(spec):
            return spec.name
        if ctx.random_weights:
            return f"{spec.name}_random"
        raise SystemExit(missing_message(spec))

    return resolve


for _spec in SPECS.values():
    register(_spec.name, _resolver(_spec))(_real(_spec))
    register(f"{_spec.name}_random")(_random(_spec))
