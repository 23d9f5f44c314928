#!/usr/bin/env bash
# Whole-run benchmark (issue 5). One invocation, one machine, one after the other (never in
# parallel), so every ratio in the table compares numbers measured under the same conditions:
#
# Every run but rundel is phase 1 only (the job with perturbation.scope = "none"):
#   run1     qcam run JOB, 1 process × 1 worker (phase-1 images/s, and the 300-image peak RSS)
#   floor    benches/floor.rs: bare tch forwards of the same models on the same preprocessed
#            images and batches, same threads; plus deletion/insertion's kernel cost
#   peer     benches/peer/pipeline.py: the paper's Python pipeline on the same images and cores
#   spawn2   qcam spawn -n 2 -- run JOB (2 processes × 1 worker)
#   run1p    run1 again with OMP_WAIT_POLICY=PASSIVE (libgomp threads sleep instead of spinning
#            while they wait; skipped when the variable is already set for the whole bench)
#   run1thp  run1 again with THP_MEM_ALLOC_ENABLE=1: libtorch's tensors of 2 MB and more on
#            transparent huge pages (qcam's default until the heap kept activations; now off)
#   runw2    qcam run JOB -w 2 (1 process × 2 workers, torch threads shared out; the demo's layout)
#   run1t1   qcam run with run.torch_threads = 1 (1 process × 1 worker × 1 thread): the base of
#            the per-core scaling of spawn2, which gives each process 1 thread on a 2-core machine
#   floor-t1, floor-t1a/b  the floor with 1 thread, alone and then as two processes at once: how
#            far the machine itself scales from 1 core to 2 (the ceiling for spawn2 / run1t1)
#   run1200  qcam run on a 1,200-image Kaggle-layout folder (the sample 4×, symlinked under new
#            ids), for peak RSS against run1
#   rundel   qcam run JOB with deletion/insertion on the top DEL_FRACTION (default 0.01) of each
#            pair: the whole stage in the graph against the floor's bare forwards
#
# The forward speed-ups (issue 14), against the pairs as they were exported before them
# (REFERENCE_MODELS, default artifacts/models-asexported: `make models-asexported`):
#   floor-compare  each model's bare forward as exported, plain with channels_last input, and as
#            qcam loads it (benches/floor.rs --reference-models), interleaved
#   rundel-ref   rundel with the reference models, run by BASE_QCAM when set (a qcam built from
#            the code before, e.g. main's), else by this qcam: deletion/insertion before and after,
#            right before rundel. An older BASE_QCAM reads only manifests of its own format: give
#            it REFERENCE_MODELS from its own export (a 2-image run checks this before phase 1)
#   job, peerjob  the whole job (phase 1 and deletion/insertion, the job's own layout, subset,
#            steps and batch) by qcam and by the Python peer end to end; jobref: the same job
#            with the reference models (by BASE_QCAM when set); peerjob-asexp: the peer on the
#            reference models (the files as exported), the Python pipeline a user ran before
#   jobpw    the job without the baseline pixel orders (the peer runs EigenCAM's only): the
#            qcam side of the whole-job ratios
#   REF_OVERRIDES  job_variant.py arguments for the reference runs only (rundel-ref, jobref): an
#            older BASE_QCAM refuses settings it does not know (`-baselines -perturbation.baselines
#            ...`), and the job as it was shipped may differ (`perturbation.batch_size=32`)
#
# Then benches/perf_table.py writes table.md. Knobs (environment):
#   JOB=jobs/demo.toml  BENCH_OUT=target/bench-run/<UTC stamp>  PEER_LIMIT=64 (images the Python
#   peer runs; it is several times slower)  PERTURB_IMAGES=1 (per pair and variant, floor and peer)
#   PERTURB_BATCHES=4,16 (batch sizes the floor also times the deletion/insertion kernel at, besides the job's)
#   PHASE1_REPS=3  DEL_FRACTION=0.01  REFERENCE_MODELS  BASE_QCAM  SKIP_JOB=1 (no job, jobpw, jobref,
#   peerjob, peerjob-asexp)  SKIP_1200=1  SKIP_PEER=1  SKIP_DEL=1  SKIP_SCALING=1 (no
#   run1t1, no floor-t1*)  SKIP_OMP=1 (no run1p)  SKIP_THP=1 (no run1thp)  PERF=1 (also record a
#   `perf` profile of run1 when perf works)
set -euo pipefail
cd "$(dirname "$0")/.."
JOB=${JOB:-jobs/demo.toml}
OUT=${BENCH_OUT:-target/bench-run/$(date -u +%Y%m%dT%H%M%SZ)}
PEER_LIMIT=${PEER_LIMIT:-64}
PERTURB_IMAGES=${PERTURB_IMAGES:-1}
DEL_FRACTION=${DEL_FRACTION:-0.01}
PHASE1_REPS=${PHASE1_REPS:-3}
PY=${PY:-.venv/bin/python}
REF=${REFERENCE_MODELS:-artifacts/models-asexported}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "bench: GNU time (/usr/bin/time) is needed for peak RSS (apt-get install time)" >&2; exit 1; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
log() { echo "bench: $*" >&2; }
# Job variants (benches/job_variant.py): phase 1 only, then the same with one torch thread, and the
# deletion/insertion run on a small subset.
"$PY" benches/job_variant.py "$JOB" "$OUT/job-phase1.toml" 'perturbation.scope="none"'
"$PY" benches/job_variant.py "$JOB" "$OUT/job-t1.toml" 'perturbation.scope="none"' run.torch_threads=1
"$PY" benches/job_variant.py "$JOB" "$OUT/job-del.toml" 'perturbation.scope="subset"' "subset.top_fraction=$DEL_FRACTION"
# The job with only EigenCAM's pixel orders: the work the Python peer does.
"$PY" benches/job_variant.py "$JOB" "$OUT/job-peerwork.toml" 'perturbation.baselines=[]'
# shellcheck disable=SC2086 # REF_OVERRIDES is a list of arguments
"$PY" benches/job_variant.py "$OUT/job-del.toml" "$OUT/job-del-ref.toml" ${REF_OVERRIDES:-}
# shellcheck disable=SC2086
"$PY" benches/job_variant.py "$JOB" "$OUT/job-ref.toml" ${REF_OVERRIDES:-}

# The job's data, models, pairs and batch size, resolved as qcam resolves them.
read -r DATA MODELS PAIRS BATCH FRACTION PBATCH < <("$PY" - "$JOB" <<'EOF'
import os, sys, tomllib
p = sys.argv[1]
j = tomllib.load(open(p, "rb"))
base = os.path.dirname(os.path.abspath(p))
r = lambda x: x if "://" in x else os.path.normpath(os.path.join(base, x))
batch = j.get("run", {}).get("batch_size", 16)
print(r(j["data"]["path"]), r(j["models"]["dir"]), ",".join(j["models"]["pairs"]), batch,
      j.get("subset", {}).get("top_fraction", 0.05), j.get("perturbation", {}).get("batch_size", 0) or batch)
EOF
)
THREADS=$(nproc)

log "building (release binary and the floor bench)"
cargo build --release
QCAM=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/qcam
cargo bench --bench floor --no-run 2>&1 | tail -n 1
FLOOR=$(cargo bench --bench floor --no-run --message-format=json 2>/dev/null \
  | "$PY" -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "floor" and m.get("executable"):
        print(m["executable"])')

# Frozen copies of both binaries: a build elsewhere in this checkout during the bench (the machine
# may be shared) must not swap the program between two measurements. `spawn` re-executes itself,
# so its processes run the copy too; rpaths to libtorch are absolute, so the copies run anywhere.
mkdir -p "$OUT/bin"
cp "$QCAM" "$OUT/bin/runner"
cp "$FLOOR" "$OUT/bin/floor"
QCAM=$OUT/bin/runner
FLOOR=$OUT/bin/floor
if [ -n "${BASE_QCAM:-}" ]; then cp "$BASE_QCAM" "$OUT/bin/base"; BASE=$OUT/bin/base; else BASE=$QCAM; fi
HAVE_REF=$([ -d "$REF" ] && echo 1 || echo 0)
[ "$HAVE_REF" = 1 ] || log "no reference models at $REF (make models-asexported): skipping floor-compare, rundel-ref, jobref"
# Fail now, not after phase 1: the reference runs (rundel-ref, jobref) must start. An older
# BASE_QCAM refuses job keys it does not know (REF_OVERRIDES) and manifests newer than its own
# (format 2: `make models-asexported`; give it REFERENCE_MODELS from its own export instead).
if [ "$HAVE_REF" = 1 ] && { [ "${SKIP_DEL:-0}" != 1 ] || [ "${SKIP_JOB:-0}" != 1 ]; }; then
  "$PY" benches/job_variant.py "$OUT/job-del-ref.toml" "$OUT/job-preflight.toml" data.limit=2 'perturbation.scope="none"'
  if ! "$BASE" run "$OUT/job-preflight.toml" --models "$REF" --overwrite --out "$OUT/preflight" -w 1 > "$OUT/preflight.log" 2>&1; then
    log "the reference run cannot start ($BASE on $REF; set REFERENCE_MODELS or REF_OVERRIDES):"
    tail -n 3 "$OUT/preflight.log" >&2
    exit 1
  fi
  rm -rf "$OUT/preflight" "$OUT/preflight.log" "$OUT/job-preflight.toml"
fi

lscpu > "$OUT/lscpu.txt"
env | grep -E '^(OMP|GOMP|MKL|OPENBLAS)_' > "$OUT/env.txt" || true
: > "$OUT/load.txt"
# Before each step: the load average (the machine may be shared, and drift between steps is the
# noise), and the CPU time the hypervisor has taken from this VM so far (/proc/stat's steal,
# seconds): a step whose wall grew while its CPU time did not lost the CPU.
HZ=$(getconf CLK_TCK)
stamp() { echo "$1 $(cut -d' ' -f1-3 /proc/loadavg) $(awk -v hz="$HZ" '/^cpu /{printf "%.2f", $9 / hz}' /proc/stat)" >> "$OUT/load.txt"; }
timed() { local name=$1; shift; stamp "$name"; "$TIME" -v -o "$OUT/$name.time" "$@" > "$OUT/$name.log" 2>&1; }

# Phase 1 is measured PHASE1_REPS times as interleaved (floor, 1 × 1, 1 × 2) triples, and the
# table takes the median of the per-triple ratios: on a shared machine the speed drifts by 20-30%
# over minutes, which one triple cannot tell from overhead. Rep 1 writes floor-pre, run1, runw2;
# rep r writes floor-pre.r, run1.r, runw2.r.
for r in $(seq 1 "$PHASE1_REPS"); do
  sfx=$([ "$r" = 1 ] && echo "" || echo ".$r")
  log "(a$r) phase 1, rep $r of $PHASE1_REPS: floor, qcam 1 × 1, qcam 1 × 2"
  stamp "floor-pre$sfx"
  "$FLOOR" --job "$OUT/job-phase1.toml" --threads "$THREADS" --perturb-images 0 --io-images 0 \
    --out "$OUT/floor-pre$sfx.json" 2> "$OUT/floor-pre$sfx.log"
  grep "phase-1" "$OUT/floor-pre$sfx.log" >&2
  if [ "$r" = 1 ] && [ "${PERF:-0}" = 1 ] && command -v perf >/dev/null && perf record -q -o /dev/null true 2>/dev/null; then
    timed run1 perf record -q -F 499 -o "$OUT/perf.data" "$QCAM" run "$OUT/job-phase1.toml" --overwrite --out "$OUT/run1" -w 1
    perf report -i "$OUT/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 15 > "$OUT/perf-dso.txt" || true
    perf report -i "$OUT/perf.data" --no-children --sort sym --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | grep '%' | head -n 40 > "$OUT/perf-sym.txt" || true
  else
    timed "run1$sfx" "$QCAM" run "$OUT/job-phase1.toml" --overwrite --out "$OUT/run1$sfx" -w 1
  fi
  timed "runw2$sfx" "$QCAM" run "$OUT/job-phase1.toml" --overwrite --out "$OUT/runw2$sfx" -w 2
done

if [ -z "${OMP_WAIT_POLICY:-}" ] && [ "${SKIP_OMP:-0}" != 1 ]; then
  log "(a2) qcam run 1 × 1 with OMP_WAIT_POLICY=PASSIVE → $OUT/run1p"
  OMP_WAIT_POLICY=PASSIVE timed run1p "$QCAM" run "$OUT/job-phase1.toml" --overwrite --out "$OUT/run1p" -w 1
  tail -n 1 "$OUT/run1p.log" >&2
fi

if [ -z "${THP_MEM_ALLOC_ENABLE:-}" ] && [ "${SKIP_THP:-0}" != 1 ]; then
  log "(a3) qcam run 1 × 1 with THP_MEM_ALLOC_ENABLE=1 (huge pages) → $OUT/run1thp"
  THP_MEM_ALLOC_ENABLE=1 timed run1thp "$QCAM" run "$OUT/job-phase1.toml" --overwrite --out "$OUT/run1thp" -w 1
  tail -n 1 "$OUT/run1thp.log" >&2
fi

log "(b) floor after run1: bare forwards of the same models, images and batches; del/ins kernel"
stamp floor
"$FLOOR" --job "$OUT/job-phase1.toml" --threads "$THREADS" --perturb-images "$PERTURB_IMAGES" \
  --perturb-batches "${PERTURB_BATCHES:-4,16}" --out "$OUT/floor.json" 2> "$OUT/floor.log"
grep "phase-1" "$OUT/floor.log" >&2

# Right after the floor's deletion/insertion pass, which it is compared with: the machine's speed
# drifts over minutes when it is shared.
if [ "${SKIP_DEL:-0}" != 1 ] && [ "$HAVE_REF" = 1 ]; then
  log "(b1) deletion/insertion before the speed-ups: reference models, $([ "$BASE" = "$QCAM" ] && echo "this qcam" || echo "$BASE_QCAM") → $OUT/rundel-ref"
  timed rundel-ref "$BASE" run "$OUT/job-del-ref.toml" --models "$REF" --overwrite --out "$OUT/rundel-ref" -w 1
  tail -n 1 "$OUT/rundel-ref.log" >&2
fi
if [ "${SKIP_DEL:-0}" != 1 ]; then
  log "(b2) deletion/insertion in the graph, top $DEL_FRACTION of each pair → $OUT/rundel"
  timed rundel "$QCAM" run "$OUT/job-del.toml" --overwrite --out "$OUT/rundel" -w 1
  tail -n 1 "$OUT/rundel.log" >&2
fi

if [ "$HAVE_REF" = 1 ]; then
  log "(b4) each model's forward: as exported, plain + channels_last, as qcam loads it → $OUT/floor-compare.json"
  stamp floor-compare
  "$FLOOR" --job "$OUT/job-phase1.toml" --threads "$THREADS" --skip-phase1 --io-images 0 --perturb-images 0 \
    --reference-models "$REF" --out "$OUT/floor-compare.json" 2> "$OUT/floor-compare.log"
  grep "as exported" "$OUT/floor-compare.log" >&2
fi

if [ "${SKIP_JOB:-0}" != 1 ]; then
  # The whole job as a user runs it (its own workers, subset, steps), then the peer doing the same.
  log "(b5) the whole job: qcam → $OUT/job"
  timed job "$QCAM" run "$JOB" --overwrite --out "$OUT/job"
  tail -n 1 "$OUT/job.log" >&2
  log "(b5b) the same job with EigenCAM's pixel orders only, the peer's work → $OUT/jobpw"
  timed jobpw "$QCAM" run "$OUT/job-peerwork.toml" --overwrite --out "$OUT/jobpw"
  tail -n 1 "$OUT/jobpw.log" >&2
  if [ "$HAVE_REF" = 1 ]; then
    log "(b6) the whole job with the reference models → $OUT/jobref"
    timed jobref "$BASE" run "$OUT/job-ref.toml" --models "$REF" --overwrite --out "$OUT/jobref"
    tail -n 1 "$OUT/jobref.log" >&2
  fi
  if [ "${SKIP_PEER:-0}" != 1 ]; then
    log "(b7) the whole job: Python peer (all images, deletion/insertion on the top $FRACTION) → $OUT/peerjob.json"
    timed peerjob "$PY" benches/peer/pipeline.py --data "$DATA" --models "$MODELS" --pairs "$PAIRS" --threads "$THREADS" \
      --batch "$BATCH" --subset-fraction "$FRACTION" --perturb-batch "$PBATCH" --out "$OUT/peerjob.json" \
      --parquet "$OUT/peerjob-tables"
    tail -n 1 "$OUT/peerjob.log" >&2
    if [ "$HAVE_REF" = 1 ]; then
      # The issue's peer: the Python pipeline on the files as they were exported before qcam's
      # forward speed-ups (traced float, NCHW), which is what a user of it runs; the run above
      # gives the peer qcam's own optimized files, so it isolates the pipeline around the forwards.
      log "(b8) the whole job: Python peer on the files as exported → $OUT/peerjob-asexp.json"
      timed peerjob-asexp "$PY" benches/peer/pipeline.py --data "$DATA" --models "$REF" --pairs "$PAIRS" --threads "$THREADS" \
        --batch "$BATCH" --subset-fraction "$FRACTION" --perturb-batch "$PBATCH" --out "$OUT/peerjob-asexp.json" \
        --parquet "$OUT/peerjob-asexp-tables"
      tail -n 1 "$OUT/peerjob-asexp.log" >&2
    fi
  fi
fi

if [ "${SKIP_PEER:-0}" != 1 ]; then
  log "(c) Python peer on the first $PEER_LIMIT images"
  stamp peer
  "$PY" benches/peer/pipeline.py --data "$DATA" --models "$MODELS" --pairs "$PAIRS" --threads "$THREADS" \
    --batch "$BATCH" --limit "$PEER_LIMIT" --perturb-images "$PERTURB_IMAGES" --perturb-batch "$PBATCH" --out "$OUT/peer.json" \
    --parquet "$OUT/peer-tables" 2> "$OUT/peer.log"
  tail -n 1 "$OUT/peer.log" >&2
fi

log "(d) qcam spawn -n 2 (2 processes × 1 worker) → $OUT/spawn2"
timed spawn2 "$QCAM" spawn -n 2 -- run "$OUT/job-phase1.toml" --overwrite --out "$OUT/spawn2" -w 1
tail -n 2 "$OUT/spawn2.log" >&2

if [ "${SKIP_SCALING:-0}" != 1 ]; then
  log "(d3) qcam run with run.torch_threads = 1 (1 process × 1 worker × 1 thread) → $OUT/run1t1"
  timed run1t1 "$QCAM" run "$OUT/job-t1.toml" --overwrite --out "$OUT/run1t1" -w 1
  log "(d4) the floor with 1 thread: alone, then two at once → $OUT/floor-t1*.json"
  floor1() { "$FLOOR" --job "$OUT/job-phase1.toml" --threads 1 --perturb-images 0 --io-images 0 --out "$OUT/$1.json" 2> "$OUT/$1.log"; }
  stamp floor-t1
  floor1 floor-t1
  stamp floor-t1ab
  floor1 floor-t1a & a=$!
  floor1 floor-t1b & b=$!
  wait "$a" && wait "$b"
  grep -h "phase-1" "$OUT"/floor-t1*.log >&2
fi

if [ "${SKIP_1200:-0}" != 1 ]; then
  log "(e) 1,200 images (the sample 4× under new ids) → $OUT/run1200"
  D=$OUT/data1200
  rm -rf "$D" && mkdir -p "$D/ILSVRC/Data/CLS-LOC/val"
  ln -s "$DATA/LOC_synset_mapping.txt" "$D/LOC_synset_mapping.txt"
  "$PY" - "$DATA" "$D" <<'EOF'
import csv, os, sys
src, dst = sys.argv[1], sys.argv[2]
val_src, val_dst = (os.path.join(x, "ILSVRC/Data/CLS-LOC/val") for x in (src, dst))
rows = list(csv.reader(open(os.path.join(src, "LOC_val_solution.csv"))))
head, body = rows[0], rows[1:]
with open(os.path.join(dst, "LOC_val_solution.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(head)
    for k in range(4):  # ImageNet val ids stop at 50000, so +50000·k never collides
        for image_id, pred in body:
            n = int(image_id.rsplit("_", 1)[1]) + 50000 * k
            new = f"ILSVRC2012_val_{n:08d}"
            os.symlink(os.path.join(val_src, image_id + ".JPEG"), os.path.join(val_dst, new + ".JPEG"))
            w.writerow([new, pred])
EOF
  timed run1200 "$QCAM" run "$OUT/job-phase1.toml" --data "$D" --overwrite --out "$OUT/run1200" -w 1
  tail -n 1 "$OUT/run1200.log" >&2
fi
stamp end

CRITERION=$(cargo metadata --format-version 1 --no-deps 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/criterion
"$PY" benches/perf_table.py "$OUT" "$CRITERION" > "$OUT/table.md"
log "table: $OUT/table.md"
cat "$OUT/table.md"
