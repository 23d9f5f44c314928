"""TorchScript models that break the model-pair contract (SPEC §2) on purpose, for tests/bad_input.rs.

Each file is a tiny scripted module (no weights worth speaking of, fast on any CPU). The test writes
a manifest with the right sizes and sha256 around them, so that qcam's integrity check passes and
what fails, if anything, is the contract itself.

    python bad_models.py OUT_DIR

writes OUT_DIR/<mode>.pt for every mode below and OUT_DIR/modes.json (mode -> description).
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

CLASSES = 1000  # logits per image; the activation is [N, 12, 7, 7] at a 224 crop


class Tiny(torch.nn.Module):
    """`act` = the 7x7 average-pooled input repeated to 12 channels, squared plus one (so every
    value is at least 1: a zero in it can only come from a NaN replaced by 0); `logits` = a fixed
    random linear map of the pooled input."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(CLASSES, 3 * 7 * 7, generator=g) * 0.1, requires_grad=False)

    def forward(self, x: torch.Tensor):
        pooled = F.adaptive_avg_pool2d(x, 7)  # [N, 3, 7, 7]
        act = pooled.repeat(1, 4, 1, 1) ** 2 + 1.0  # [N, 12, 7, 7], all >= 1
        logits = pooled.flatten(1) @ self.weight.t()  # [N, 1000]
        if self.mode == "nan_logits_bright":
            # NaN logits (and activations) for an image whose mean normalised value is above 0.9:
            # with mean = std = 0.5 only a nearly white image gets there.
            bright = x.mean(dim=(1, 2, 3)) > 0.9
            logits = torch.where(bright[:, None], torch.full_like(logits, float("nan")), logits)
            act = torch.where(bright[:, None, None, None], torch.full_like(act, float("nan")), act)
        if self.mode == "nan_act_channel0":
            # Channel 0 of every image's activation is NaN; logits stay finite.
            act = torch.cat([torch.full_like(act[:, :1], float("nan")), act[:, 1:]], dim=1)
        if self.mode == "act_rank3":
            return logits, act.flatten(2)  # [N, 12, 49]
        if self.mode == "act_16_channels":
            return logits, torch.cat([act, act[:, :4]], dim=1)  # [N, 16, 7, 7]
        if self.mode == "logits_100":
            return logits[:, :100], act
        return logits, act


class OneTensor(torch.nn.Module):
    """Returns only the logits: the wrong arity."""

    def forward(self, x: torch.Tensor):
        return F.adaptive_avg_pool2d(x, 1).flatten(1).repeat(1, 334)[:, :1000]


class ThreeTuple(torch.nn.Module):
    """Returns (logits, act, act): the wrong arity."""

    def __init__(self):
        super().__init__()
        self.tiny = Tiny("ok")

    def forward(self, x: torch.Tensor):
        logits, act = self.tiny(x)
        return logits, act, act


MODES = {
    "ok": "the contract: (logits [N,1000], act [N,12,7,7])",
    "nan_logits_bright": "NaN logits and act for a nearly white image",
    "nan_act_channel0": "act channel 0 is NaN for every image, logits finite",
    "act_rank3": "act is [N,12,49]",
    "act_16_channels": "act is [N,16,7,7] where the manifest says [12,7,7]",
    "logits_100": "logits are [N,100]",
    "one_tensor": "returns one tensor",
    "three_tuple": "returns a 3-tuple",
}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for mode in MODES:
        if mode == "one_tensor":
            module = OneTensor()
        elif mode == "three_tuple":
            module = ThreeTuple()
        else:
            module = Tiny(mode)
        scripted = torch.jit.script(module.eval())
        scripted.save(str(out / f"{mode}.pt"))
        # The saved file must behave as described (a broken generator would make every test moot).
        loaded = torch.jit.load(str(out / f"{mode}.pt"))
        y = loaded(torch.zeros(2, 3, 224, 224))
        if mode == "one_tensor":
            assert isinstance(y, torch.Tensor)
        elif mode == "three_tuple":
            assert isinstance(y, tuple) and len(y) == 3
        else:
            assert isinstance(y, tuple) and len(y) == 2
    (out / "modes.json").write_text(json.dumps(MODES, indent=1))


if __name__ == "__main__":
    main()
