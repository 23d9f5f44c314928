"""Writes a copy of a job file with some settings changed, for scripts/bench.sh.

    .venv/bin/python benches/job_variant.py SRC DST section.key=value -section.key -section ...

Values are TOML literals (`1`, `0.01`, `"none"`). `-section.key` drops a setting and `-section` a
whole section (for a job that an older qcam, which refuses settings it does not know, must read). Relative `path`/`dir` settings are made absolute,
because DST lives elsewhere. The copy is checked by parsing it back: each override must read back
as given, so a typo in a section or key stops the bench instead of silently measuring the
unchanged job.
"""
import os
import re
import sys
import tomllib

src, dst, *overrides = sys.argv[1:]
base = os.path.dirname(os.path.abspath(src))
wanted, dropped = {}, set()
for o in overrides:
    if o.startswith("-"):
        dropped.add(o[1:])
        continue
    key, value = o.split("=", 1)
    section, name = key.split(".", 1)
    wanted.setdefault(section, {})[name] = value

out, section, pending = [], None, {k: dict(v) for k, v in wanted.items()}


def flush(sec):
    # Settings the section did not have yet go at its end.
    for name, value in pending.pop(sec, {}).items():
        out.append(f"{name} = {value}\n")


skipping = False  # inside a multi-line array that an override replaced
for line in open(src):
    if skipping:
        skipping = "]" not in line.split("#", 1)[0]
        continue
    m = re.match(r"\s*\[(\w+)\]", line)
    if m:
        flush(section)
        section = m.group(1)
    if section in dropped:
        continue
    m = re.match(r"\s*(\w+)\s*=", line)
    if m and f"{section}.{m.group(1)}" in dropped:
        rest = line.split("=", 1)[1].split("#", 1)[0].strip()
        skipping = rest.startswith("[") and "]" not in rest
        continue
    m = re.match(r'(\s*(path|dir)\s*=\s*)"([^"]+)"(.*)', line, re.S)
    if m and "://" not in m.group(3):
        line = f'{m.group(1)}"{os.path.normpath(os.path.join(base, m.group(3)))}"{m.group(4)}'
    m = re.match(r"\s*(\w+)\s*=", line)
    if m and m.group(1) in pending.get(section, {}):
        rest = line.split("=", 1)[1].split("#", 1)[0].strip()
        skipping = rest.startswith("[") and "]" not in rest
        line = f"{m.group(1)} = {pending[section].pop(m.group(1))}\n"
    out.append(line)
flush(section)
for sec in list(pending):  # sections the job did not have at all
    out.append(f"\n[{sec}]\n")
    flush(sec)
open(dst, "w").writelines(out)

got = tomllib.load(open(dst, "rb"))
for d in dropped:
    sec, _, name = d.partition(".")
    if (name and name in got.get(sec, {})) or (not name and sec in got):
        raise SystemExit(f"job_variant: {dst}: {d} is still there")
for sec, kv in wanted.items():
    for name, value in kv.items():
        if got.get(sec, {}).get(name) != tomllib.loads(f"v = {value}")["v"]:
            raise SystemExit(f"job_variant: {dst}: {sec}.{name} did not come out as {value}")
