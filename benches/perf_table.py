"""Turns one `scripts/bench.sh` output folder into the issue-5 ratio table (Markdown on stdout).

    .venv/bin/python benches/perf_table.py target/bench-run/<stamp> [target/criterion]

Reads what the script wrote there: `run1/` (qcam, 1 process × 1 worker, and its `run1.time`, GNU
time -v), `floor.json` (benches/floor.rs), `peer.json` (benches/peer/pipeline.py), `spawn2/` (2
processes × 1 worker), `run1200.time` (the 1,200-image run), `lscpu.txt`, `load.txt`; for the
forward speed-ups (issue 14) `floor-compare.json`, `rundel-ref/`, `job/`, `jobref/`, `peerjob.json`
(the peer on qcam's optimized files) and `peerjob-asexp.json` (the peer on the files as exported).
Every ratio is between numbers measured in that one invocation.
"""
import glob
import json
import os
import re
import statistics
import sys

import pyarrow.parquet as pq

out = sys.argv[1]


def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None


def gnu_time(name):
    """Elapsed seconds and max RSS (kB) from a `/usr/bin/time -v` log."""
    p = os.path.join(out, name)
    if not os.path.exists(p):
        return None
    text = open(p).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    if not m:  # still running, or killed before GNU time wrote its report
        return None
    parts = [float(x) for x in m.group(1).split(":")]
    secs = sum(v * 60 ** i for i, v in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    status = re.search(r"Exit status: (\d+)", text)
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", text).group(1)) for k in ("User", "System"))
    return {"elapsed_s": secs, "max_rss_kb": rss, "cpu_s": cpu, "exit": int(status.group(1)) if status else None}


def run_record(d):
    files = sorted(glob.glob(os.path.join(out, d, "run*.json")))
    return [json.load(open(f)) for f in files]


def table_rows(d, table):
    files = sorted(glob.glob(os.path.join(out, d, table, "*.parquet")))
    return [r for f in files for r in pq.read_table(f).to_pylist()]


def fmt(x, nd=2):
    return "n/a" if x is None else f"{x:.{nd}f}"


def find_seconds(obj, needle, path=""):
    """Numeric values under keys containing `needle` and ending in `_s`, anywhere in a JSON tree."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float)) and needle in k and k.endswith("_s"):
                found.append((path + "." + k, float(v)))
            else:
                found += find_seconds(v, needle, path + "." + k)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += find_seconds(v, needle, f"{path}[{i}]")
    return found


def reps(name):
    """Phase-1 reps of one step, in order: NAME, NAME.2, NAME.3, … (scripts/bench.sh)."""
    found, r = [], 1
    while True:
        d = name if r == 1 else f"{name}.{r}"
        rec = run_record(d) if not d.startswith("floor") else load(d + ".json")
        if not rec:
            return found
        found.append(rec)
        r += 1


def wall(rec):
    return max(r["wall_s"] for r in rec)


floors_p1 = [f["phase1_forward_s"] for f in reps("floor-pre")]
run1_reps, runw2_reps = reps("run1"), reps("runw2")
# Rep 1 of each is the run the other rows compare with.
run1 = run1_reps[0] if run1_reps else []
runw2 = runw2_reps[0] if runw2_reps else []
floor = load("floor.json")
peer = load("peer.json")
spawn = run_record("spawn2")
run1p = run_record("run1p")
run1t1 = run_record("run1t1")
run1thp = run_record("run1thp")
run1nothp = run_record("run1nothp")  # folders from before huge pages were turned off by default
floor_t1 = [load(f"floor-t1{x}.json") for x in ("", "a", "b")]
t1, t1200 = gnu_time("run1.time"), gnu_time("run1200.time")

rows = []  # (what, measured, target, met, how)
if peer:
    for label, runs in (("1 × 1", run1_reps), ("1 × 2, the demo's layout", runw2_reps)):
        if not runs:
            continue
        n_img = sum(w["images_in"] for r in runs[0] for w in r["workers"])
        ips = statistics.median([n_img / wall(r) for r in runs])
        ratio = ips / peer["images_per_s"]
        rows.append((f"phase-1 images/s, qcam {label} / Python peer",
                     f"{ratio:.1f}× ({ips:.2f} vs {peer['images_per_s']:.3f} images/s)", "≥ 5×", ratio >= 5,
                     f"qcam: median of {len(runs)} runs on {n_img} images; peer on its first {peer['images']} "
                     f"(pytorch-grad-cam's full SVD), same cores; with a thin SVD the peer would do "
                     f"{peer['images_per_s_thin_svd']:.3f} images/s → {ips / peer['images_per_s_thin_svd']:.1f}×"))
for label, runs in (("1 process × 1 worker", run1_reps), ("1 process × 2 workers, the demo's layout", runw2_reps)):
    n = min(len(runs), len(floors_p1))
    if n:
        ratios = [wall(runs[i]) / floors_p1[i] for i in range(n)]
        m = statistics.median(ratios)
        rows.append((f"phase-1 wall / bare forward time, {label}", f"{m:.2f} (median of {n}: "
                     + ", ".join(f"{wall(runs[i]):.1f}/{floors_p1[i]:.1f} s" for i in range(n)) + ")",
                     "≤ 1.10", m <= 1.10,
                     f"interleaved (floor, 1 × 1, 1 × 2) triples; run wall (run.json) against Σ over pairs × variants "
                     f"of bare tch forwards of the same {floor['images'] if floor else '?'} images in the same batches, "
                     f"{floor['torch_threads'] if floor else '?'} threads, measured just before"))
if run1:
    # The same ratio on one timeline: the run's wall against the forwards timed inside that run.
    imgs1 = table_rows("run1", "images")
    infer_s = sum(r["infer_ms"] for r in imgs1) / 1e3
    if infer_s > 0:
        ratio = run1[0]["wall_s"] / infer_s
        rows.append(("phase-1 wall / forward time inside the same run", f"{ratio:.2f} ({run1[0]['wall_s']:.1f} s / {infer_s:.1f} s)",
                     "≤ 1.10", ratio <= 1.10,
                     "Σ `infer_ms` of the run's images table (forward + dequantize, timed by qcam around each "
                     "batch): immune to load drift between separate processes"))

if t1 and floor and floor.get("phase1_forward_cpu_s"):
    fc = floor["phase1_forward_cpu_s"]
    rows.append(("phase-1 CPU seconds, qcam run / bare forwards", f"{t1['cpu_s'] / fc:.2f} ({t1['cpu_s']:.1f} s / {fc:.1f} s)",
                 "—", None, "user + system of the whole qcam process (GNU time; model loading, decode and all included) "
                 "against the floor's forward loops (after-run pass); both count OpenMP spin-waiting"))

# Deletion/insertion through the graph: `rundel` (scripts/bench.sh) runs the stage on a small
# subset; its run.json has the stage time, its perturbation table says which (model, variant)
# each image ran, and the floor's separate pass gives the 202 bare forwards of each (model, variant).
rundel = run_record("rundel")
pert_rows = table_rows("rundel", "perturbation") if rundel else []
stage = [w["perturb_s"] for r in rundel for w in r["workers"] if "perturb_s" in w]
if pert_rows and stage and floor and floor.get("perturb"):
    bare = {}
    for c in floor["perturb"]:
        bare.setdefault((c["pair"], c["variant"]), []).append(c["bare_forward_s"])
    bare = {k: sum(v) / len(v) for k, v in bare.items()}
    missing = {(r["model"], r["variant"]) for r in pert_rows} - set(bare)
    if missing:
        raise SystemExit(f"perf_table: the floor has no deletion/insertion case for {sorted(missing)}")
    run_s = sum(stage)
    bare_s = sum(bare[(r["model"], r["variant"])] for r in pert_rows)
    ratio = run_s / bare_s
    rows.append(("del+ins per image / its 202 bare forwards (whole stage, in the graph)",
                 f"{ratio:.2f} ({run_s / len(pert_rows):.2f} s / {bare_s / len(pert_rows):.2f} s per image·variant)",
                 "≤ 1.15", ratio <= 1.15,
                 f"`rundel`: the stage's time in run.json (shard re-read, decode, staging and Parquet included) over "
                 f"{len(pert_rows)} perturbation rows, against the floor's bare forwards of the same (model, variant) "
                 f"in batches of {floor.get('perturb_batch', '?')}"))
inside = [w["perturb_forward_s"] for r in rundel for w in r["workers"] if w.get("perturb_forward_s")]
if pert_rows and stage and inside:
    ratio = sum(stage) / sum(inside)
    rows.append(("del+ins per image / its 202 forwards (whole stage in the graph, same timeline)",
                 f"{ratio:.2f} ({sum(stage) / len(pert_rows):.2f} s / {sum(inside) / len(pert_rows):.2f} s per image·variant)",
                 "≤ 1.15", ratio <= 1.15,
                 "`rundel`: the stage's time against the time inside the model forwards during that same stage "
                 "(run.json `perturb_forward_s`): immune to load drift between separate steps"))
if floor and floor.get("perturb_ratio"):
    inner = floor.get("perturb_inner_ratio")
    if inner:
        fw = sum(c["inner_forward_s"] for c in floor["perturb"]) / len(floor["perturb"])
        rows.append(("del+ins kernel / its 202 forwards (same timeline)", f"{inner:.2f} "
                     f"({floor['perturb_s_per_image_variant']:.2f} s / {fw:.2f} s per image·variant)", "≤ 1.15",
                     inner <= 1.15, "kernel cost: operators::perturb::causal_curves driven by a tch forward, "
                     "against the time inside `forward_is` during that same pass; "
                     f"{len(floor['perturb'])} (image, variant) cases (benches/floor.rs)"))
    ratio = floor["perturb_ratio"]
    rows.append(("del+ins kernel / its 202 bare forwards (separate pass)", f"{ratio:.2f} ({floor['perturb_s_per_image_variant']:.2f} s / "
                 f"{floor['perturb_bare_s_per_image_variant']:.2f} s per image·variant)", "≤ 1.15", ratio <= 1.15,
                 "the same, against a separate pass of bare forwards of the 202 captured images (best of reps)"))
# Deletion/insertion before and after the forward speed-ups: the same job (`job-del`) with the
# reference models (the export as it was; by BASE_QCAM when the bench was given one) and with these.
rundel_ref = run_record("rundel-ref")
ref_rows = table_rows("rundel-ref", "perturbation") if rundel_ref else []
if ref_rows and pert_rows and stage:
    per = lambda rec, rows: sum(w["perturb_s"] for r in rec for w in r["workers"]) / len(rows)  # noqa: E731
    before, after = per(rundel_ref, ref_rows), per(rundel, pert_rows)
    rows.append(("deletion/insertion seconds per image·variant, after / before the forward speed-ups",
                 f"{after / before:.2f} ({after:.2f} s vs {before:.2f} s)", "≤ 0.65", after / before <= 0.65,
                 f"`rundel` against `rundel-ref` just before it: the same job and images ({len(pert_rows)} rows), "
                 "the reference export (traced float files, fbgemm PTQ) and, when given, the code before"))
job, jobref = run_record("job"), run_record("jobref")
# The peer runs EigenCAM's pixel orders only; `jobpw` is the job without the baseline orders, the
# same work. Without it the ratio counts qcam's baseline rows against it.
jobpw = run_record("jobpw")
same_work = jobpw or job
for peer_file, whose in [("peerjob.json", "on qcam's own optimized files"), ("peerjob-asexp.json", "on the files as exported")]:
    peerjob = load(peer_file)
    if same_work and peerjob:
        w = wall(same_work)
        rows.append((f"the whole job end to end, Python peer {whose} / qcam",
                     f"{peerjob['job_s'] / w:.1f}× ({peerjob['job_s']:.0f} s vs {w:.0f} s)", "≥ 4×", peerjob["job_s"] / w >= 4,
                     f"the bench's job (phase 1 on {peerjob['images']} images, then deletion/insertion of "
                     f"each pair's top {peerjob['subset_fraction']} by RMSE, {same_work[0]['job']['perturbation']['steps']} steps"
                     + ("; EigenCAM's orders only, as the peer: `jobpw`" if jobpw else "; qcam also runs the baseline orders")
                     + f"), qcam's run.json wall against the peer doing the same ({peer_file}: benches/peer/pipeline.py "
                     "--subset-fraction)"))
# The most the whole-job ratio can reach without faster forwards: the same run's model forwards
# alone (phase 1's Σ `infer_ms` and the stage's `perturb_forward_s`, timed inside the run), spread
# evenly over its workers. The peer runs the same forwards in the same libtorch, so no overhead
# qcam removes can lift the ratio above this.
peer_asexp = load("peerjob-asexp.json")
if same_work and peer_asexp:
    d = "jobpw" if jobpw else "job"
    workers = [w for r in same_work for w in r["workers"]]
    fwd = sum(r["infer_ms"] for r in table_rows(d, "images")) / 1e3 + sum(w["perturb_forward_s"] for w in workers)
    bound, w = fwd / len(workers), wall(same_work)
    rows.append(("the whole job if qcam did nothing but its model forwards: Python peer on the files as exported / that",
                 f"{peer_asexp['job_s'] / bound:.1f}× ({peer_asexp['job_s']:.0f} s vs {bound:.0f} s; qcam's wall is "
                 f"{w / bound:.2f}× its forwards)", "—", None,
                 f"`{d}`: Σ `infer_ms` of its images table + Σ `perturb_forward_s` of run.json = {fwd:.0f} "
                 f"worker-seconds inside model forwards, over {len(workers)} workers: the ceiling of the row above "
                 "while both sides run libtorch's forwards"))
if job and jobref:
    rows.append(("the whole job, qcam after / before the forward speed-ups", f"{wall(job) / wall(jobref):.2f} "
                 f"({wall(job):.0f} s vs {wall(jobref):.0f} s)", "—", None,
                 "`job` against `jobref`: the same job with the reference export (and the code before, when given)"))
    # The stage as a user sees it: from the end of phase 1 (the first worker to see it) to the
    # end of the run, in the job's own layout, per perturbation row (an image under one variant and
    # pixel order), so idle workers count and a job with more baseline rows is not penalised.
    def stage_per_row(rec, d):
        n = len(table_rows(d, "perturbation"))
        return (wall(rec) - min(w["phase1_s"] for r in rec for w in r["workers"])) / n if n else None
    waits = [w.get("engine_wait_s") for r in job for w in r["workers"]]
    if all(x is not None for x in waits):
        rows.append(("time workers waited for another pair's int8 engine, the whole job", f"{sum(waits):.1f} s of "
                     f"{sum(w['wall_s'] for r in job for w in r['workers']):.0f} worker-seconds", "—", None,
                     "run.json `engine_wait_s`, summed over workers: libtorch's quantized engine is one setting per process"))
    after, before = stage_per_row(job, "job"), stage_per_row(jobref, "jobref")
    if after and before:
        rows.append(("deletion/insertion wall per image·variant, the whole job, after / before", f"{after / before:.2f} "
                     f"({after:.2f} s vs {before:.2f} s)", "≤ 0.65", after / before <= 0.65,
                     "`job` against `jobref` (REF_OVERRIDES: the job as it was shipped): the stage's wall, from the end "
                     "of phase 1 to the end of the run, in the job's own layout, over its perturbation rows"))
if peer and peer.get("perturb") and floor and floor.get("perturb"):
    rows.append(("del+ins seconds per image·variant, Python RISE / qcam kernel",
                 f"{peer['perturb_s_per_image_variant'] / floor['perturb_s_per_image_variant']:.2f}× "
                 f"({peer['perturb_s_per_image_variant']:.2f} s vs {floor['perturb_s_per_image_variant']:.2f} s)",
                 "—", None, "same images, models, batch and threads; RISE adds one unperturbed forward per curve"))
if run1 and spawn:
    w1 = run1[0]["wall_s"]
    w2 = max(r["wall_s"] for r in spawn)
    ratio = w1 / w2
    rows.append(("2 processes × 1 worker vs 1 × 1 (speed-up)", f"{ratio:.2f}× ({w1:.1f} s vs {w2:.1f} s)", "≥ 1.8×",
                 ratio >= 1.8, f"walls from run.json; `qcam spawn -n 2`, each process gets "
                 f"{spawn[0]['workers'][0]['torch_threads']} torch thread(s) vs {run1[0]['workers'][0]['torch_threads']}"))
if run1 and run1p:
    w1, w = run1[0]["wall_s"], run1p[0]["wall_s"]
    rows.append(("qcam 1 × 1 with OMP_WAIT_POLICY=PASSIVE vs default (speed-up)", f"{w1 / w:.2f}× ({w1:.1f} s vs {w:.1f} s)",
                 "—", None, "libgomp's default spin-waiting burns the cycles a preempted partner thread needs when "
                 "the cores are shared"))
# Huge pages: `run1thp` turns them on against today's default (off); folders from before they were
# turned off by default have `run1nothp`, the same A/B the other way round.
for rec, default, other in ((run1thp, "4 KiB pages", "THP_MEM_ALLOC_ENABLE=1"),
                            (run1nothp, "huge pages", "THP_MEM_ALLOC_ENABLE=0")):
    if run1 and rec:
        w1, w = run1[0]["wall_s"], rec[0]["wall_s"]
        rows.append((f"qcam 1 × 1 with {default} (the default) vs {other} (speed-up)", f"{w / w1:.2f}× ({w:.1f} s vs {w1:.1f} s)",
                     "—", None, "libtorch madvises its tensors of 2 MB and more for huge pages: fewer faults, but 2 MB "
                     "of zeroing per fault and 2 MB-aligned buffers in the one heap that keeps each batch's activations"))
if run1 and runw2:
    w1, w = run1[0]["wall_s"], runw2[0]["wall_s"]
    rows.append(("1 process × 2 workers vs 1 × 1 (speed-up)", f"{w1 / w:.2f}× ({w1:.1f} s vs {w:.1f} s)", "—", None,
                 f"torch threads per worker {runw2[0]['workers'][0]['torch_threads']} vs {run1[0]['workers'][0]['torch_threads']}"))
if run1t1 and spawn:
    w1 = run1t1[0]["wall_s"]
    w2 = max(r["wall_s"] for r in spawn)
    ratio = w1 / w2
    rows.append(("2 processes × 1 worker vs 1 × 1, 1 torch thread each (per-core scaling)", f"{ratio:.2f}× ({w1:.1f} s vs {w2:.1f} s)",
                 "≥ 1.8×", ratio >= 1.8, "what the scale-out target means on a 2-core machine: the same per-process "
                 "threads (run.torch_threads = 1), twice the processes"))
if all(floor_t1):
    f1 = floor_t1[0]["phase1_forward_s"]
    f2 = max(f["phase1_forward_s"] for f in floor_t1[1:])
    ceiling = 2 * f1 / f2
    rows.append(("the machine's own per-core scaling: 2 floor processes × 1 thread vs 1", f"{ceiling:.2f}× (2 × {f1:.1f} s of "
                 f"forwards in {f2:.1f} s)", "—", None, "bare forwards only, no qcam: the ceiling for the per-core "
                 "scaling above; the two processes share the L3 cache and memory bandwidth"))
    if floor:
        # The target as worded (2 threads in one process against 2 processes × 1 thread), for bare
        # forwards: two 1-thread loops at once do the 300 images twice in f2.
        f2t = floor["phase1_forward_s"]
        rows.append(("the machine's ceiling for the speed-up as worded: 2-thread floor vs 2 floor processes × 1 thread",
                     f"{2 * f2t / f2:.2f}× ({f2t:.1f} s vs {f2 / 2:.1f} s per pass of the images)", "—", None,
                     "bare forwards only: what 2 processes × 1 thread can gain over 1 process × 2 threads at best on "
                     "these cores, since the 2-thread baseline already uses both"))
    if run1t1 and spawn:
        ratio = (run1t1[0]["wall_s"] / max(r["wall_s"] for r in spawn)) / ceiling
        rows.append(("qcam's per-core scaling / the machine's", f"{ratio:.2f}", "—", None,
                     "1.00 means qcam scales from 1 core to 2 as well as bare libtorch forwards do on this machine"))
others = [(n, gnu_time(f"{n}.time")) for n in ("run1p", "run1t1", "run1thp", "run1nothp")]
if t1 and t1200:
    ratio = t1200["max_rss_kb"] / t1["max_rss_kb"]
    rows.append(("peak RSS, 1,200 / 300 images", f"{ratio:.2f} ({t1200['max_rss_kb'] / 1024:.0f} MB vs {t1['max_rss_kb'] / 1024:.0f} MB)",
                 "≤ 1.10", ratio <= 1.10, "GNU time -v, 1 process × 1 worker"
                 + (f"; the other 300-image 1 × 1 runs peaked at "
                    + ", ".join(f"{n} {g['max_rss_kb'] / 1024:.0f} MB" for n, g in others if g)
                    + " (run-to-run spread)" if any(g for _, g in others) else "")))

print("| measure | measured | target | met | how |")
print("|---|---|---|---|---|")
for what, val, target, met, how in rows:
    print(f"| {what} | {val} | {target} | {'—' if met is None else ('yes' if met else '**no**')} | {how} |")

# ------------------------------------------------------------------ each model's forward
compare = (load("floor-compare.json") or {}).get("compare")
if compare:
    print()
    print("Each model's bare forward (ms per image, best of interleaved reps, the job's batches): the file as "
          "exported before the speed-ups (plain `torch.jit.load`, NCHW), the current file loaded plainly with "
          "channels_last input, and as qcam loads it (its manifest's load pass). The ratio judged is the median "
          "over reps of (as qcam loads it / as exported), each rep's two forwards back to back: the machine's "
          "speed drifts between reps by more than the best reps differ. Target for float "
          "`efficientnet_lite0` and `mobilenet_v2*`: ≤ 0.6 of as exported.")
    print()
    print("| pair | variant | engine (as exported → now) | as exported | plain, channels_last | as qcam loads it | ratio of best | median ratio (range) | met | top-1 agreement | max \\|Δ logit\\| |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for c in compare:
        best = c["optimized_ms"] / c["as_exported_ms"]
        reps = c.get("rep_ratios") or [best]
        ratio = statistics.median(reps)
        targeted = c["variant"] == "float" and (c["pair"] == "efficientnet_lite0" or c["pair"].startswith("mobilenet_v2"))
        met = ("yes" if ratio <= 0.6 else "**no**") if targeted else "—"
        engines = f"{c['as_exported_engine']} → {c['engine']}" if c["engine"] else "—"
        print(f"| {c['pair']} | {c['variant']} | {engines} | {c['as_exported_ms']:.1f} | {c['frozen_cl_ms']:.1f} | "
              f"{c['optimized_ms']:.1f} | {best:.2f} | {ratio:.2f} ({min(reps):.2f}–{max(reps):.2f}, {len(reps)} reps) | {met} | "
              f"{c['top1_agree']:.3f} | {c['max_abs_dlogit']:.2g} |")
if floor and any(c.get("other_batches") for c in floor.get("perturb", [])):
    print()
    print(f"The deletion/insertion kernel at other batch sizes, seconds per image·variant (the job's batch is "
          f"{floor['perturb_batch']}; best of the same interleaved reps, {floor['torch_threads']} threads):")
    print()
    # The job's own batch is its own column; a repeat of it in PERTURB_BATCHES would read as another size.
    sizes = sorted({b for c in floor["perturb"] for b, _ in c["other_batches"]} - {floor["perturb_batch"]})
    print("| pair | variant | " + " | ".join(f"batch {b}" for b in sizes) + f" | batch {floor['perturb_batch']} (the job's) |")
    print("|---|---|" + "---|" * (len(sizes) + 1))
    for c in floor["perturb"]:
        other = dict(c["other_batches"])
        print(f"| {c['pair']} | {c['variant']} | " + " | ".join(f"{other[b]:.2f}" for b in sizes)
              + f" | {c['causal_curves_s']:.2f} |")

# ------------------------------------------------------------------ where the time goes
if run1 and floor:
    print()
    print("Where qcam's phase-1 time goes (1 process × 1 worker, seconds; `infer` is Σ `infer_ms` of the images "
          "table = forward + dequantize, `cam` is Σ `cam_ms` = EigenCAM + upsample):")
    print()
    imgs = table_rows("run1", "images")
    fl = {p["name"]: p for p in floor["pairs"]}
    print("| pair | variant | qcam infer | floor forward | infer / floor | qcam cam |")
    print("|---|---|---|---|---|---|")
    tot_inf = tot_cam = tot_floor = 0.0
    for name in sorted(fl):
        for v in ("float", "quantized"):
            sel = [r for r in imgs if r["model"] == name and r["variant"] == v]
            inf = sum(r["infer_ms"] for r in sel) / 1e3
            cam = sum(r["cam_ms"] for r in sel) / 1e3
            f = fl[name][v]["forward_s"]
            tot_inf, tot_cam, tot_floor = tot_inf + inf, tot_cam + cam, tot_floor + f
            print(f"| {name} | {v} | {inf:.1f} | {f:.1f} | {inf / f:.2f} | {cam:.1f} |")
    wall = run1[0]["wall_s"]
    print(f"| **all** | | {tot_inf:.1f} | {tot_floor:.1f} | {tot_inf / tot_floor:.2f} | {tot_cam:.1f} |")
    print()
    print(f"Run wall {wall:.1f} s = infer {tot_inf:.1f} ({100 * tot_inf / wall:.0f}%) + cam {tot_cam:.1f} "
          f"({100 * tot_cam / wall:.0f}%) + everything else {wall - tot_inf - tot_cam:.1f} s "
          f"({100 * (wall - tot_inf - tot_cam) / wall:.0f}%: decode, WSOL, statistics, RMSE, Parquet, model load, "
          f"dataflow). Floor decode+preprocess: "
          + ", ".join(f"{k.split('-')[2]} {v:.1f} s" for k, v in floor["decode_s"]) + ".")
    if floor.get("io"):
        print()
        print("qcam's `Forward` (input copy + forward + dequantize + outputs to Vec) / bare forward, same batches: "
              + ", ".join(f"{c['pair']} {c['variant']} {c['ratio']:.2f}" for c in floor["io"]) + ".")
if peer:
    st = peer["stages"]
    print()
    print(f"Python peer stages ({peer['images']} images × {len(peer['pairs'])} pairs, {peer['wall_s']:.1f} s): "
          + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in st.items())
          + f"; of cam, the library's full SVD {peer['svd_full_s']:.1f} s (thin SVD of the same matrices {peer['svd_thin_s']:.1f} s).")
# Kernel medians from the criterion run (`cargo bench -p qcam-operators --bench kernels`), if any.
crit = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(out))), "criterion")
est = sorted(glob.glob(os.path.join(crit, "**", "new", "estimates.json"), recursive=True))
if est:
    print()
    print("Kernels (criterion medians, `operators/benches/kernels.rs`, from " + crit + "):")
    print()
    print("| kernel | median |")
    print("|---|---|")
    for f in est:
        name = os.path.relpath(os.path.dirname(os.path.dirname(f)), crit)
        ns = json.load(open(f))["median"]["point_estimate"]
        print(f"| {name} | {ns / 1e6:.3f} ms |" if ns >= 1e5 else f"| {name} | {ns / 1e3:.1f} µs |")
p = os.path.join(out, "load.txt")
if os.path.exists(p):
    print()
    stamps = [line.split() for line in open(p) if line.strip()]
    print("Load average (1, 5, 15 min) before each step: " + "; ".join(" ".join(s[:4]) for s in stamps) + ".")
    # Steal seconds (5th field, since the bench recorded it) between one stamp and the next: CPU
    # time the hypervisor took from the VM during that step, which no ratio here can correct.
    steal = [(a[0], float(b[4]) - float(a[4])) for a, b in zip(stamps, stamps[1:]) if len(a) > 4 and len(b) > 4]
    if steal:
        print()
        print("CPU seconds stolen by the hypervisor during each step (/proc/stat, both vCPUs): "
              + "; ".join(f"{name} {s:.1f}" for name, s in steal) + ".")
p = os.path.join(out, "env.txt")
if os.path.exists(p) and open(p).read().strip():
    print()
    print("Thread environment of the bench: " + ", ".join(l.strip() for l in open(p) if l.strip()) + ".")
