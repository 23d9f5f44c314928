"""Which quantized engine runs each int8 model fastest, and does it change the numbers?

    .venv/bin/python benches/engines.py --models artifacts/models --data ../shared/data/imagenet-val-sample \
        [--pairs a,b] [--images 64] [--reps 3] [--threads 2] [--profile efficientnet_lite0] \
        [--extra NAME=DIR ...] [--out engines.json]

For every pair: the float model, and the quantized model loaded (weights are prepacked at load,
for the engine current then) and run under each engine torch offers here (fbgemm, x86, qnnpack),
on the first `--images` sample images preprocessed as the manifest says, in batches of 16 with
`--threads` intra-op threads. Engines are interleaved rep by rep (so machine noise hits them
alike) and the best rep is kept. Against the manifest's engine: top-1 agreement and max |Δ logit|
(a different engine is a different int8 kernel, not always the same rounding).

`--extra NAME=DIR`: another exported pair folder (e.g. a re-export to compare with the shipped
one): its quantized model is timed too, and compared with the pair NAME's shipped outputs bit for
bit. `--profile PAIR`: torch.profiler's top operators of that pair's int8 model under its
manifest engine, grouped by input shape.
"""
import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--models", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--pairs", default=None, help="default: every pair folder under --models")
ap.add_argument("--images", type=int, default=64)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--engines", default="fbgemm,x86,qnnpack")
ap.add_argument("--extra", action="append", default=[])
ap.add_argument("--profile", default=None)
ap.add_argument("--out", default=None)
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)

import warnings  # noqa: E402

warnings.filterwarnings("ignore")
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

torch.set_num_threads(args.threads)
engines = [e for e in args.engines.split(",") if e in torch.backends.quantized.supported_engines]
val = os.path.join(args.data, "ILSVRC", "Data", "CLS-LOC", "val")
files = sorted(f for f in os.listdir(val) if f.lower().endswith((".jpeg", ".jpg", ".png")))[:args.images]


def inputs(man):
    pre = man["preprocess"]
    interp = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[pre["interpolation"]]
    tf = transforms.Compose([transforms.Resize(pre["resize"], interpolation=interp), transforms.CenterCrop(pre["crop"]),
                             transforms.ToTensor(), transforms.Normalize(pre["mean"], pre["std"])])
    x = torch.stack([tf(Image.open(os.path.join(val, f)).convert("RGB")) for f in files])
    return list(x.split(args.batch))


def load(path, engine):
    if engine:
        torch.backends.quantized.engine = engine
    return torch.jit.load(path).eval()


def run(m, engine, xs):
    if engine:
        torch.backends.quantized.engine = engine
    with torch.no_grad():
        t = time.perf_counter()
        outs = [m(x) for x in xs]
        return time.perf_counter() - t, outs


pairs = args.pairs.split(",") if args.pairs else sorted(
    d for d in os.listdir(args.models) if os.path.exists(os.path.join(args.models, d, "manifest.json")))
extra = dict(e.split("=", 1) for e in args.extra)
report = {"threads": args.threads, "images": len(files), "batch": args.batch, "torch": torch.__version__, "pairs": {}}
for name in pairs:
    d = os.path.join(args.models, name)
    man = json.load(open(os.path.join(d, "manifest.json")))
    home = man["quantization"]["engine"]
    home = "fbgemm" if home == "x86" and "x86" not in engines else home
    xs = inputs(man)
    n = sum(x.shape[0] for x in xs)
    cands = {"float": (load(os.path.join(d, man["float"]["file"]), None), None)}
    for e in engines:
        try:
            cands[f"int8@{e}"] = (load(os.path.join(d, man["quantized"]["file"]), e), e)
        except Exception as err:  # noqa: BLE001
            print(f"{name}: cannot load under {e}: {str(err).splitlines()[0]}", file=sys.stderr)
    for label, ed in extra.items():
        if label.split("@")[0] == name or label == name:
            em = json.load(open(os.path.join(ed, "manifest.json")))
            cands[f"int8@{home} ({ed})"] = (load(os.path.join(ed, em["quantized"]["file"]), home), home)
    for m, e in cands.values():  # warm-up
        run(m, e, xs[:1])
    best, outs = {}, {}
    for _ in range(args.reps):
        for label, (m, e) in cands.items():
            s, o = run(m, e, xs)
            best[label] = min(best.get(label, float("inf")), s)
            outs[label] = o
    ref = outs[f"int8@{home}"]
    rows = {}
    for label in cands:
        r = {"ms_per_image": 1e3 * best[label] / n}
        if label != "float":
            o = outs[label]
            r["top1_agree_with_manifest_engine"] = sum(
                int((a[0].argmax(1) == b[0].argmax(1)).sum()) for a, b in zip(o, ref)) / n
            r["max_abs_dlogit"] = max(float((a[0] - b[0]).abs().max()) for a, b in zip(o, ref))
            r["act_bit_identical"] = all(
                a[1].q_scale() == b[1].q_scale() and a[1].q_zero_point() == b[1].q_zero_point()
                and bool((a[1].int_repr() == b[1].int_repr()).all()) for a, b in zip(o, ref))
        rows[label] = r
        print(f"{name:24s} {label:40s} {r['ms_per_image']:7.1f} ms/img"
              + ("" if label == "float" else f"  top1 agree {r['top1_agree_with_manifest_engine']:.3f}"
                 f"  max|Δlogit| {r['max_abs_dlogit']:.3g}  act identical {r['act_bit_identical']}"), file=sys.stderr)
    report["pairs"][name] = {"manifest_engine": man["quantization"]["engine"], "runs": rows}

if args.profile:
    from torch.profiler import ProfilerActivity, profile

    d = os.path.join(args.models, args.profile)
    man = json.load(open(os.path.join(d, "manifest.json")))
    e = "fbgemm" if man["quantization"]["engine"] == "x86" else man["quantization"]["engine"]
    m = load(os.path.join(d, man["quantized"]["file"]), e)
    x = inputs(man)[0]
    run(m, e, [x])
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        m(x)
    table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12,
                                                                max_name_column_width=28, max_shapes_column_width=50)
    print(table, file=sys.stderr)
    report["profile"] = {"pair": args.profile, "engine": e, "table": table}
if args.out:
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
