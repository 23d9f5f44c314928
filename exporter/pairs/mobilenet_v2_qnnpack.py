"""MobileNetV2 int8 with torchvision's real QAT weights (IMAGENET1K_QNNPACK_V1), recovered state
dict in shared/models. Float side: a *substitute* built from the dequantized int8 weights."""
from __future__ import annotations

import os

import torch

import quant
from common import REPO_ROOT, TORCHVISION_PREPROCESS, HookedPair
from . import ExportContext, PairBuild, register

ENGINE = "qnnpack"
STATE_DICT_CANDIDATES = [
    os.environ.get("QCAM_MOBILENET_V2_INT8", ""),
    os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "models", "mobilenet_v2_qnnpack_int8_state_dict.pth")),
]


def state_dict_path() -> str:
    for p in STATE_DICT_CANDIDATES:
        if p and os.path.isfile(p):
            return p
    raise SystemExit("error: mobilenet_v2_qnnpack: int8 state dict not found (looked in: "
                     + ", ".join(p for p in STATE_DICT_CANDIDATES if p)
                     + "); set QCAM_MOBILENET_V2_INT8=/path/mobilenet_v2_qnnpack_int8_state_dict.pth")


@register("mobilenet_v2_qnnpack")
def build(ctx: ExportContext) -> PairBuild:
    from torchvision.models.quantization import mobilenet_v2

    quant.set_engine(ENGINE)
    qmodel = mobilenet_v2(weights=None, quantize=True)
    qmodel.load_state_dict(torch.load(state_dict_path(), map_location="cpu"))
    qmodel.eval()

    fmodel = mobilenet_v2(weights=None, quantize=False)
    fmodel.eval()
    fmodel.fuse_model()  # conv+bn(+relu) -> Conv2d / ConvReLU2d with BN folded away
    counts = quant.dequantized_float_from_quantized(qmodel, fmodel)

    return PairBuild(
        name="mobilenet_v2_qnnpack",
        architecture="torchvision mobilenet_v2",
        preprocess=TORCHVISION_PREPROCESS,
        cam_layer="features.18",
        engine=ENGINE,
        method="qat",
        float_module=HookedPair(fmodel, "features.18"),
        quant_module=HookedPair(qmodel, "features.18"),
        float_weights="substitute:dequantized int8 weights of IMAGENET1K_QNNPACK_V1",
        quant_weights="pretrained:MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1 (recovered state dict, shared/models)",
        calibration=None,
        notes={"copied": counts},
    )
