#!/usr/bin/env python3
"""qcam model exporter: writes float/int8 TorchScript pairs + manifest.json (SPEC §2).

    python exporter/export.py --out artifacts/models --pairs efficientnet_lite0,mobilenet_v2_qnnpack,resnet18 \
        [--random-weights] [--data PATH] [--calib-images N] [--seed S] [--force]
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import quant  # noqa: E402  (also silences the torch.ao.quantization deprecation chatter)
from common import (DEFAULT_DATA, MANIFEST_FORMAT, PLAIN, REPO_ROOT, SampleData, check_not_constant,  # noqa: E402
                    file_entry, manifest_is_current, top1, trace_and_save, versions, write_json_atomic)
from loading import load_file, prepare  # noqa: E402
from pairs import BUILDERS, ExportContext, resolve  # noqa: E402

DEFAULT_PAIRS = "efficientnet_lite0,mobilenet_v2_qnnpack,resnet18"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "artifacts", "models"))
    p.add_argument("--pairs", default=DEFAULT_PAIRS,
                   help=f"comma separated (default {DEFAULT_PAIRS}); known: {', '.join(sorted(BUILDERS))}")
    p.add_argument("--random-weights", action="store_true",
                   help="build <arch>_random pairs when torchvision weights are not in the hub cache")
    p.add_argument("--data", default=os.environ.get("QCAM_IMAGENET_SAMPLE", DEFAULT_DATA),
                   help="ImageNet val sample (Kaggle layout) for calibration and top-1; 'none' to skip")
    p.add_argument("--calib-images", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--efficientnet-variant", choices=["faithful", "fast"], default="faithful")
    p.add_argument("--ptq-engine", choices=["x86", "fbgemm", "qnnpack"], default=quant.fastest_ptq_engine(),
                   help="engine the post-training-quantized pairs are calibrated and packed for (default: "
                        "the fastest this torch has on this CPU); pairs with published int8 weights keep theirs")
    p.add_argument("--plain", action="store_true",
                   help="float files as traced, loaded as they are (no freeze, no optimize_for_inference, "
                        "contiguous input): the export as it was before the float speed-ups, for references")
    p.add_argument("--no-eval", action="store_true", help="skip sample top-1 (manifest sample_top1 = null)")
    p.add_argument("--force", action="store_true", help="re-export even if the manifest is current")
    return p.parse_args(argv)


def export_pair(build, outdir: str, ctx: ExportContext, args, command: str) -> dict:
    float_runtime = PLAIN if args.plain else build.float_runtime
    os.makedirs(outdir, exist_ok=True)
    mpath = os.path.join(outdir, "manifest.json")
    if os.path.exists(mpath):
        os.remove(mpath)  # an interrupted export must not look current
    quant.set_engine(build.engine)
    fpath, qpath = os.path.join(outdir, "float.pt"), os.path.join(outdir, "quantized.pt")
    fstats = trace_and_save(build.float_module, fpath, quantized=False, seed=ctx.seed, runtime=float_runtime)
    qstats = trace_and_save(build.quant_module, qpath, quantized=True, seed=ctx.seed)
    if fstats["act_shape"] != qstats["act_shape"]:
        raise RuntimeError(f"{build.name}: act shapes differ {fstats['act_shape']} vs {qstats['act_shape']}")

    fentry = float_runtime.entry()
    floaded, qloaded = load_file(fpath, fentry), torch.jit.load(qpath)
    # top1 and check_not_constant call the model on plain NCHW batches: feed the float one as qcam does.
    ffeed = lambda x: floaded(prepare(x, fentry))  # noqa: E731
    sample = None
    extra = ""
    if ctx.data.available and not args.no_eval:
        x = ctx.data.tensors(build.preprocess)
        if build.random:
            check_not_constant(ffeed, x, f"{build.name} float")
            check_not_constant(qloaded, x, f"{build.name} quantized")
        labels = ctx.data.labels
        sample = {"float": top1(ffeed, x, labels), "quantized": top1(qloaded, x, labels), "images": x.shape[0]}
        cal = build.calibration
        if cal and cal.get("image_ids"):
            k = cal["count"]  # calibration = the first k sorted ids: report the held-out rest too
            if k < x.shape[0]:
                extra = (f" held-out({x.shape[0] - k}) f={top1(ffeed, x[k:], labels[k:]):.3f}"
                         f" q={top1(qloaded, x[k:], labels[k:]):.3f}")
    elif build.random:
        from common import random_images

        xr = random_images(8, ctx.seed + 300)
        check_not_constant(ffeed, xr, f"{build.name} float")
        check_not_constant(qloaded, xr, f"{build.name} quantized")

    manifest = {
        "format": MANIFEST_FORMAT,
        "name": build.name,
        "architecture": build.architecture,
        "preprocess": build.preprocess.to_json(),
        "cam_layer": {"name": build.cam_layer, "shape": fstats["act_shape"]},
        "quantization": {"engine": build.engine, "method": build.method, "calibration": build.calibration},
        "float": {**file_entry(outdir, "float.pt", build.float_weights), **fentry},
        "quantized": {**file_entry(outdir, "quantized.pt", build.quant_weights), **PLAIN.entry()},
        "exporter": {**versions(), "command": command},
        "sample_top1": sample,
    }
    write_json_atomic(mpath, manifest)
    top = (f"top1 f={sample['float']:.3f} q={sample['quantized']:.3f} on {sample['images']}" if sample
           else "top1 n/a")
    print(f"{build.name}: {build.engine}/{build.method} act {fstats['act_shape']} "
          f"float {manifest['float']['bytes'] / 1e6:.1f} MB, int8 {manifest['quantized']['bytes'] / 1e6:.1f} MB, "
          f"{top}{extra} -> {outdir}", flush=True)
    return manifest


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_flush_denormal(True)
    data = SampleData(None if args.data in ("", "none") else args.data)
    if not data.available:
        print("warning: no sample data: calibrating on random-normal images, no top-1", file=sys.stderr)
    ctx = ExportContext(random_weights=args.random_weights, seed=args.seed, data=data,
                        calib_images=args.calib_images, efficientnet_variant=args.efficientnet_variant,
                        ptq_engine=args.ptq_engine)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, REPO_ROOT)] + sys.argv[1:])
    names = [resolve(n.strip(), ctx) for n in args.pairs.split(",") if n.strip()]
    t_all = time.time()
    for name in names:
        outdir = os.path.join(args.out, name)
        if not args.force and manifest_is_current(outdir, frozen=not args.plain):
            print(f"{name}: up to date (manifest + sha256 match), skipped -> {outdir}", flush=True)
            continue
        t = time.time()
        build = BUILDERS[name](ctx)
        export_pair(build, outdir, ctx, args, command)
        print(f"  ({name}: {time.time() - t:.0f} s)", flush=True)
    print(f"done in {time.time() - t_all:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
