"""All quantization-API code of the exporter lives here (torch.ao.quantization, eager + FX).

Kept in one module on purpose: torch.ao.quantization is deprecated in favour of torchao / pt2e,
and the port should only have to touch this file.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Dict, Iterable, Optional

import torch
import torch.nn as nn

warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

import torch.ao.quantization as tq  # noqa: E402


def set_engine(engine: str) -> None:
    if engine not in torch.backends.quantized.supported_engines:
        raise SystemExit(f"error: quantized engine {engine!r} not supported by this torch build "
                         f"({torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine


@contextlib.contextmanager
def engine(name: str):
    old = torch.backends.quantized.engine
    set_engine(name)
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


def _calibrate(model: nn.Module, images: torch.Tensor, batch: int = 16) -> None:
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            model(images[i : i + batch])


# --------------------------------------------------------------------------------------------
# Eager mode (torchvision "Quantizable*" models)
# --------------------------------------------------------------------------------------------
def ptq_eager_torchvision(model: nn.Module, engine_name: str, calib: torch.Tensor) -> nn.Module:
    """Post-training static quantization of a torchvision Quantizable* float model (in place).

    Mirrors torchvision.models.quantization.utils.quantize_model, but calibrates on ``calib``.
    """
    set_engine(engine_name)
    model.eval()
    model.fuse_model()
    model.qconfig = tq.get_default_qconfig(engine_name)
    tq.prepare(model, inplace=True)
    _calibrate(model, calib)
    tq.convert(model, inplace=True)
    return model


def dequantized_float_from_quantized(qmodel: nn.Module, fused_float: nn.Module) -> Dict[str, int]:
    """Copy dequantized weights/biases of an eager-quantized model into its fused float twin.

    ``fused_float`` must be the same Quantizable* architecture after ``fuse_model()`` (so that the
    module names of quantized conv/linear layers match float Conv2d/Linear, BN folded away).
    Returns counts per copied module type.
    """
    fmods = dict(fused_float.named_modules())
    counts: Dict[str, int] = {}
    for name, qm in qmodel.named_modules():
        if not hasattr(qm, "weight") or not callable(getattr(qm, "weight", None)):
            continue
        if not hasattr(qm, "bias") or not callable(qm.bias):
            continue
        fm = fmods[name]
        # fused modules (ConvReLU2d) are Sequential(conv, relu): the conv is fm[0]
        target = fm[0] if isinstance(fm, nn.Sequential) else fm
        w = qm.weight().dequantize()
        b = qm.bias()
        if target.weight.shape != w.shape:
            raise RuntimeError(f"{name}: shape {tuple(w.shape)} vs {tuple(target.weight.shape)}")
        with torch.no_grad():
            target.weight.copy_(w)
            if b is None:
                target.bias = None
            else:
                if target.bias is None:
                    target.bias = nn.Parameter(torch.zeros(w.shape[0]))
                target.bias.copy_(b.detach())
        counts[type(qm).__name__] = counts.get(type(qm).__name__, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# FX graph mode
# --------------------------------------------------------------------------------------------
def relu6_fixed_qconfig(engine_name: str):
    """QConfig whose output observer is fixed to [0, 6] (scale 6/255, zero point 0).

    On a fused conv+bn+relu this makes the quantized output saturate at 6: ReLU6 for free.
    """
    base = tq.get_default_qconfig(engine_name)
    act = tq.FixedQParamsObserver.with_args(
        scale=6.0 / 255.0, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=255
    )
    return tq.QConfig(activation=act, weight=base.weight)


def ptq_fx(
    model: nn.Module,
    engine_name: str,
    calib: torch.Tensor,
    relu6_module_names: Iterable[str] = (),
    quantized_output_indexes=(1,),
) -> nn.Module:
    """FX post-training static quantization of a float module returning (logits, act).

    ``quantized_output_indexes``: outputs left as quantized tensors (the CAM activation).
    ``relu6_module_names``: modules whose output gets the fixed [0, 6] qparams.
    """
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    set_engine(engine_name)
    model.eval()
    qmap = tq.get_default_qconfig_mapping(engine_name)
    fixed = relu6_fixed_qconfig(engine_name)
    for name in relu6_module_names:
        qmap.set_module_name(name, fixed)
    pcc = PrepareCustomConfig().set_output_quantized_indexes(list(quantized_output_indexes))
    example = (calib[:2],)
    prepared = prepare_fx(model, qmap, example, prepare_custom_config=pcc)
    _calibrate(prepared, calib)
    return convert_fx(prepared)
