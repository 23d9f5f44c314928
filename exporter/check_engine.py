#!/usr/bin/env python3
"""Does the quantized engine matter only at load time, or also per forward?

Loads an exported quantized.pt under the manifest's engine, runs it, then switches
torch.backends.quantized.engine to every other supported engine and runs again.

    python exporter/check_engine.py DIR/<pair>/manifest.json [...]
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
import torch  # noqa: E402


def check(manifest: str) -> None:
    m = json.load(open(manifest))
    eng = m["quantization"]["engine"]
    path = os.path.join(os.path.dirname(manifest), m["quantized"]["file"])
    torch.backends.quantized.engine = eng
    model = torch.jit.load(path)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref_l, ref_a = model(x)
    print(f"{m['name']}: packed+loaded under {eng}")
    for other in [e for e in torch.backends.quantized.supported_engines if e not in ("none", "onednn")]:
        torch.backends.quantized.engine = other
        try:
            with torch.no_grad():
                l, a = model(x)
            dl = (l - ref_l).abs().max().item()
            da = (a.int_repr().int() - ref_a.int_repr().int()).abs().max().item()
            print(f"  forward under {other:8s}: max|dlogits|={dl:.3g} max|dact int|={da} "
                  f"act qparams equal={a.q_scale() == ref_a.q_scale() and a.q_zero_point() == ref_a.q_zero_point()}")
        except Exception as e:  # noqa: BLE001
            print(f"  forward under {other:8s}: ERROR {type(e).__name__}: {str(e).splitlines()[0][:160]}")
        torch.backends.quantized.engine = eng
    # and loading under the wrong engine
    for other in [e for e in torch.backends.quantized.supported_engines if e not in ("none", "onednn", eng)]:
        torch.backends.quantized.engine = other
        try:
            m2 = torch.jit.load(path)
            with torch.no_grad():
                l, a = m2(x)
            print(f"  load+forward under {other:8s}: max|dlogits|={(l - ref_l).abs().max().item():.3g}")
        except Exception as e:  # noqa: BLE001
            print(f"  load+forward under {other:8s}: ERROR {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    torch.backends.quantized.engine = eng


if __name__ == "__main__":
    for mp in sys.argv[1:]:
        check(mp)
