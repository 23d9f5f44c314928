#!/usr/bin/env bash
# Idempotent setup: the project venv (torch from PyPI, which is also qcam's libtorch) and the
# .venv/libtorch link that .cargo/config.toml points tch at. A second run takes seconds: pip runs
# only when the requirements changed, and its downloads are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
REQS=(exporter/requirements.txt exporter/requirements-test.txt)
stamp="$VENV/.qcam-requirements.sha256"
want=$(cat "${REQS[@]}" | sha256sum | cut -d' ' -f1)

# nasm lets mozjpeg build libjpeg-turbo's SIMD decoder (same pixels as the C one, ~2x faster).
# Optional: without it (or without root/apt) the C code is built.
if ! command -v nasm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing nasm (optional, for SIMD JPEG decoding)"
  (apt-get install -y -qq nasm >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nasm >/dev/null 2>&1; }) \
    || echo "setup: nasm not installed; JPEG decoding uses the (identical, slower) C code"
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python requirements (first time: ~7 min, ~5.7 GB, mostly torch's CUDA wheels)"
  t0=$(date +%s)
  "$VENV/bin/pip" install --disable-pip-version-check -q "${REQS[@]/#/-r}"
  echo "$want" > "$stamp"
  echo "setup: pip took $(( $(date +%s) - t0 )) s"
fi
torch_dir=$("$VENV/bin/python" -c 'import torch, pathlib; print(pathlib.Path(torch.__file__).parent)')
# A stable, relative link: cargo finds libtorch without Python on PATH.
ln -sfn "$(realpath --relative-to="$VENV" "$torch_dir")" "$VENV/libtorch"
echo "setup: ok ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
