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


def fastest_ptq_engine() -> str:
    """The engine post-training-quantized pairs are exported for: x86 (oneDNN + fbgemm, libtorch's
    default on x86 CPUs) wherever torch has it. Measured on a CPU without AVX512-VNNI (batch 32, 2
    threads): ResNet18 int8 1.4x faster than under fbgemm, EfficientNet-Lite0 on a par, both
    bit-identical to their fbgemm exports (the same qconfig calibrates both). With VNNI, x86 runs
    convs with symmetric weights on oneDNN, and outputs differ from fbgemm's (AMD EPYC: top-1
    agreement 0.969 and 0.875 for EfficientNet-Lite0 and ResNet18, max |logit diff| 0.55 and
    0.12). Again without VNNI at the job's batches (8 and 16, 2 threads, best of 5 interleaved):
    ResNet18 12.6/12.8 ms per image under x86 against 13.4/13.4 under fbgemm, EfficientNet-Lite0
    7.5/9.4 against 7.1/8.4, outputs bit-identical either way. One engine
    for every PTQ pair also keeps the workers of a process from waiting for each other's engine (it
    is one setting per process), which a per-model pick would cost. Elsewhere (ARM) qnnpack."""
    supported = torch.backends.quantized.supported_engines
    return next(e for e in ("x86", "fbgemm", "qnnpack") if e in supported)


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


def relu6_input_qconfig(engine_name: str):
    """QConfig for a conv(+BN) whose output feeds a *separate* ReLU6: output qparams fixed to
    scale 6/127, zero point 0 (the 7-bit range of fbgemm/x86's reduce_range activations).

    Values < 0 saturate at 0 in the quint8 output, values in (6, 12] survive the requantisation
    and are then clipped by the quantized ReLU6, whose output (sharing these qparams) is exactly
    ReLU6 on a 6/127 grid and fits the 7 bits the next fbgemm conv expects. Without this, the
    observer sees the pre-activation range (often [-40, 40]) and the ReLU6 output is left with
    ~10-20 levels in [0, 6] (measured: 63.7% instead of 77% top-1 for EfficientNet-Lite0).
    """
    base = tq.get_default_qconfig(engine_name)
    qmax = 127 if engine_name in ("fbgemm", "x86") else 255
    act = tq.FixedQParamsObserver.with_args(
        scale=6.0 / qmax, zero_point=0, dtype=torch.quint8, quant_min=0, quant_max=qmax
    )
    return tq.QConfig(activation=act, weight=base.weight)


def _backend_config_with_quantized_pad(engine_name: str):
    """The engine's backend config plus ``nn.ZeroPad2d`` as a quantized op sharing its input's
    qparams (quantized constant padding with 0.0 is exact: it writes the zero point).

    Otherwise FX runs the pad in float (dequantize -> pad -> quantize) and the quantize after it
    takes its observer from the *consumer's* qconfig: with a fixed ReLU6 qconfig on the stem conv
    the network input itself would be clipped to [0, 6].

    ``operator.getitem`` (slicing: EfficientNet-Lite0's ``EveryOther`` subsampling) shares its
    input's observer too, so the requantisation FX puts after it is the identity.
    """
    import operator

    from torch.ao.quantization.backend_config import (
        BackendPatternConfig,
        ObservationType,
        get_fbgemm_backend_config,
        get_native_backend_config,
        get_qnnpack_backend_config,
    )
    from torch.ao.quantization.backend_config.x86 import get_x86_backend_config
    import torch.ao.quantization.backend_config.utils  # noqa: F401  (used lazily by BackendConfig)

    bc = {"fbgemm": get_fbgemm_backend_config, "x86": get_x86_backend_config,
          "qnnpack": get_qnnpack_backend_config}.get(engine_name, get_native_backend_config)()
    dtype_configs = [c for c in bc.configs if c.pattern is nn.ReLU6][0].dtype_configs
    bc.set_backend_pattern_config(
        BackendPatternConfig(nn.ZeroPad2d)
        .set_observation_type(ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT)
        .set_dtype_configs(dtype_configs)
    )
    bc.set_backend_pattern_config(
        BackendPatternConfig(operator.getitem)
        .set_observation_type(ObservationType.OUTPUT_SHARE_OBSERVER_WITH_INPUT)
        .set_dtype_configs(dtype_configs)
    )
    return bc


def ptq_fx(
    model: nn.Module,
    engine_name: str,
    calib: torch.Tensor,
    relu6_module_names: Iterable[str] = (),
    relu6_input_module_names: Iterable[str] = (),
    quantized_pad: bool = False,
    quantized_output_indexes=(1,),
) -> nn.Module:
    """FX post-training static quantization of a float module returning (logits, act).

    ``quantized_output_indexes``: outputs left as quantized tensors (the CAM activation).
    ``relu6_module_names``: modules whose output gets the fixed [0, 6] qparams (fast variant).
    ``relu6_input_module_names``: modules whose output feeds a separate ReLU6: fixed
    scale-6/127 qparams (``relu6_input_qconfig``).
    ``quantized_pad``: run ``nn.ZeroPad2d`` as a quantized op (``_backend_config_with_quantized_pad``).
    """
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    set_engine(engine_name)
    model.eval()
    qmap = tq.get_default_qconfig_mapping(engine_name)
    fixed = relu6_fixed_qconfig(engine_name)
    for name in relu6_module_names:
        qmap.set_module_name(name, fixed)
    r6in = relu6_input_qconfig(engine_name)
    for name in relu6_input_module_names:
        qmap.set_module_name(name, r6in)
    bc = _backend_config_with_quantized_pad(engine_name) if quantized_pad else None
    pcc = PrepareCustomConfig().set_output_quantized_indexes(list(quantized_output_indexes))
    example = (calib[:2],)
    prepared = prepare_fx(model, qmap, example, prepare_custom_config=pcc, backend_config=bc)
    _calibrate(prepared, calib)
    return convert_fx(prepared, backend_config=bc)
