#!/usr/bin/env python3
"""Reference outputs of an exported qcam model pair, for the Rust test suite.

    python tests/reference/torch_outputs.py --manifest DIR/<pair>/manifest.json \
        --input in.f32 --n N --out out_prefix [--engine x86]

Reads raw little-endian f32 input [N,3,224,224], runs float.pt and quantized.pt (with
torch.backends.quantized.engine from the manifest or --engine, each file loaded and fed as its
manifest entry says: exporter/loading.py) and writes
  out_prefix.{float,quantized}.logits.f32   [N,1000]    little-endian f32
  out_prefix.{float,quantized}.act.f32      [N,C,h,w]   little-endian f32 (dequantized, NaN -> 0)
  out_prefix.json                           shapes, files, quantized act q_scale / q_zero_point
"""
import argparse
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "exporter"))
import loading  # noqa: E402  (loads and feeds each file as its manifest says, as qcam does)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--manifest", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--engine", default=None, help="run the int8 model under this engine, not the manifest's")
    a = p.parse_args(argv)

    with open(a.manifest) as f:
        m = json.load(f)
    base = os.path.dirname(os.path.abspath(a.manifest))
    engine = loading.set_engine(m, a.engine)
    crop = m["preprocess"]["crop"]
    raw = np.fromfile(a.input, dtype="<f4")
    want = a.n * 3 * crop * crop
    if raw.size != want:
        print(f"error: {a.input} has {raw.size} floats, expected {want} for N={a.n}", file=sys.stderr)
        return 2
    x = torch.from_numpy(raw.astype(np.float32).reshape(a.n, 3, crop, crop))

    info = {"manifest": os.path.abspath(a.manifest), "engine": engine, "n": a.n,
            "input_shape": list(x.shape), "torch": torch.__version__}
    for side in ("float", "quantized"):
        model = loading.load(base, m, side)
        with torch.no_grad():
            logits, act = model(loading.prepare(x, m[side]))
        entry = {"logits_shape": list(logits.shape), "act_shape": list(act.shape),
                 "act_quantized": bool(act.is_quantized)}
        if act.is_quantized:
            entry["q_scale"] = float(act.q_scale())
            entry["q_zero_point"] = int(act.q_zero_point())
            entry["act_dtype"] = str(act.dtype).replace("torch.", "")
            act = act.dequantize()
        logits = torch.nan_to_num(logits.float(), nan=0.0)
        act = torch.nan_to_num(act.float(), nan=0.0)
        lf, af = f"{a.out}.{side}.logits.f32", f"{a.out}.{side}.act.f32"
        logits.contiguous().numpy().astype("<f4").tofile(lf)
        act.contiguous().numpy().astype("<f4").tofile(af)
        entry["logits_file"], entry["act_file"] = lf, af
        info[side] = entry
    with open(a.out + ".json", "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
