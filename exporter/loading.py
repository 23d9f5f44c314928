"""How an exported model file is loaded and fed, read from its manifest entry (format 2), exactly as
qcam does it (src/torch.rs): the exporter's checks, the test references and the benches all load
through here, so the files Python checks are run the way qcam runs them.

A format-1 entry has none of the keys: a plain ``torch.jit.load`` and contiguous input.
"""
from __future__ import annotations

import os

import torch


def set_engine(manifest: dict, engine: str | None = None) -> str:
    """Sets torch's quantized engine to ``engine`` or the manifest's; returns it. Weights are packed
    for the engine current at load, and element-wise int8 ops dispatch on the one current at forward."""
    engine = engine or manifest["quantization"]["engine"]
    if engine not in torch.backends.quantized.supported_engines:
        raise SystemExit(f"error: quantized engine {engine!r} not supported by this torch build "
                         f"({torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine
    return engine


def load_file(path: str, entry: dict):
    """``torch.jit.load`` in eval mode, then ``optimize_for_inference`` when the entry asks for it
    (its result cannot be saved, so every consumer runs it after loading)."""
    m = torch.jit.load(path).eval()
    if entry.get("optimize_for_inference"):
        m = torch.jit.optimize_for_inference(m)
    return m


def load(manifest_dir: str, manifest: dict, side: str):
    """One side (``float`` or ``quantized``) of an exported pair. Set the engine first."""
    entry = manifest[side]
    return load_file(os.path.join(manifest_dir, entry["file"]), entry)


def prepare(x: torch.Tensor, entry: dict) -> torch.Tensor:
    """The input as the entry says to feed it: channels_last memory format, or as it is."""
    return x.contiguous(memory_format=torch.channels_last) if entry.get("channels_last") else x
