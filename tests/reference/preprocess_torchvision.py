#!/usr/bin/env python3
"""Reference outputs for operators/src/decode.rs (SPEC §1), produced with Pillow + torchvision.

Two sub-commands, each writing raw little-endian arrays plus a JSON manifest into --out:

  tensors   For every *.JPEG under --images (sorted by file name), write
              decoded.u8              Pillow's Image.open(p).convert('RGB'), HWC, concatenated
              resized_<name>.u8       PIL.Image.resize of that to torchvision's Resize(resize) size
              tensors_<name>.f32      torchvision Resize(resize, interp) -> CenterCrop(crop) ->
                                      ToTensor() -> Normalize(mean, std), CHW, concatenated
            for each configuration given with --config NAME:INTERP:RESIZE:CROP:M0,M1,M2:S0,S1,S2.
            manifest.json lists images (id, file, w, h, offsets in bytes) and configurations.

  fixtures  Small synthetic files for decode unit tests (baseline 4:2:0/4:2:2/4:4:4, odd sizes,
            restart markers, progressive, grayscale, CMYK with and without the Adobe marker,
            a 10000x10000 grayscale JPEG, PNGs) and Pillow's convert('RGB') of
            each: <name>.bin (encoded bytes) and <name>.rgb (RGB8, HWC); fixtures.json lists them.

  convert   FILE...: Pillow's convert('RGB') of each file to FILE.rgb, with FILE.json (mode, size).

Only torch/torchvision's transforms are used for the tensors; nothing is reimplemented here.
"""
import argparse
import glob
import io
import json
import os
import sys

import numpy as np
from PIL import Image


def parse_config(s):
    name, interp, resize, crop, mean, std = s.split(":")
    return {
        "name": name,
        "interpolation": interp,
        "resize": int(resize),
        "crop": int(crop),
        "mean": [float(v) for v in mean.split(",")],
        "std": [float(v) for v in std.split(",")],
    }


def cmd_tensors(args):
    import torch
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    torch.set_num_threads(1)
    paths = sorted(glob.glob(os.path.join(args.images, "*.JPEG")))
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        sys.exit(f"no *.JPEG files under {args.images}")
    configs = [parse_config(c) for c in args.config]
    modes = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
    pil_modes = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    pipelines = []
    for c in configs:
        pipelines.append(
            transforms.Compose(
                [
                    transforms.Resize(c["resize"], interpolation=modes[c["interpolation"]]),
                    transforms.CenterCrop(c["crop"]),
                    transforms.ToTensor(),
                    transforms.Normalize(mean=c["mean"], std=c["std"]),
                ]
            )
        )
    images = []
    dec_f = open(os.path.join(args.out, "decoded.u8"), "wb")
    res_f = [open(os.path.join(args.out, f"resized_{c['name']}.u8"), "wb") for c in configs]
    ten_f = [open(os.path.join(args.out, f"tensors_{c['name']}.f32"), "wb") for c in configs]
    dec_off = 0
    res_off = [0] * len(configs)
    for p in paths:
        with Image.open(p) as im0:
            im = im0.convert("RGB")
        w, h = im.size
        arr = np.asarray(im, dtype=np.uint8)
        dec_f.write(arr.tobytes())
        entry = {
            "id": os.path.splitext(os.path.basename(p))[0],
            "file": os.path.abspath(p),
            "w": w,
            "h": h,
            "decoded_offset": dec_off,
            "resized": [],
        }
        dec_off += arr.nbytes
        for i, (c, pipe) in enumerate(zip(configs, pipelines)):
            # The exact size torchvision's Resize computes (its own helper, not a re-derivation).
            rh, rw = F._compute_resized_output_size((h, w), [c["resize"]])
            r = np.asarray(im.resize((rw, rh), pil_modes[c["interpolation"]]), dtype=np.uint8)
            res_f[i].write(r.tobytes())
            entry["resized"].append({"w": rw, "h": rh, "offset": res_off[i]})
            res_off[i] += r.nbytes
            t = pipe(im).numpy().astype("<f4")
            assert t.shape == (3, c["crop"], c["crop"]), t.shape
            ten_f[i].write(t.tobytes())
        images.append(entry)
    for f in [dec_f, *res_f, *ten_f]:
        f.close()
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump({"images": images, "configs": configs}, f)
    print(f"wrote {len(images)} images x {len(configs)} configs to {args.out}")


def save_fixture(out, name, data, entries, **extra):
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(data)
    im = Image.open(io.BytesIO(data))
    entry = {"name": name, "mode": im.mode, "w": im.size[0], "h": im.size[1], **extra}
    if not extra.get("header_only"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        with open(os.path.join(out, name + ".rgb"), "wb") as f:
            f.write(rgb.tobytes())
    entries.append(entry)


def encode(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def strip_app14(data):
    """Remove every APP14 (Adobe) segment from a JPEG's header."""
    out, i = bytearray(data[:2]), 2
    while i < len(data):
        assert data[i] == 0xFF, i
        code = data[i + 1]
        if code == 0xDA:  # SOS: the rest is scan data
            out += data[i:]
            break
        n = int.from_bytes(data[i + 2 : i + 4], "big")
        if code != 0xEE:
            out += data[i : i + 2 + n]
        i += 2 + n
    assert bytes(out) != data, "no APP14 segment"
    return bytes(out)


def cmd_fixtures(args):
    rng = np.random.default_rng(12345)
    out = args.out
    entries = []
    # Smooth-ish content so JPEG artefacts stay small, plus some texture.
    yy, xx = np.mgrid[0:48, 0:64]
    base = (np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1) % 256).astype(np.uint8)
    noisy = np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    rgb = Image.fromarray(noisy, "RGB")
    save_fixture(out, "rgb_420", encode(rgb, "JPEG", quality=90), entries)
    save_fixture(out, "rgb_444", encode(rgb, "JPEG", quality=95, subsampling=0), entries)
    save_fixture(out, "rgb_progressive", encode(rgb, "JPEG", quality=90, progressive=True), entries)
    # Odd sizes (partial MCUs at the right/bottom edges, where fancy upsampling replicates the
    # last column/row), 4:2:2, restart markers, progressive + odd size.
    odd = Image.fromarray(noisy[:45, :61], "RGB")
    save_fixture(out, "rgb_420_odd", encode(odd, "JPEG", quality=85), entries)
    save_fixture(out, "rgb_422_odd", encode(odd, "JPEG", quality=85, subsampling=1), entries)
    save_fixture(out, "rgb_progressive_odd", encode(odd, "JPEG", quality=80, progressive=True),
                 entries)
    save_fixture(out, "rgb_restart", encode(rgb, "JPEG", quality=90, restart_marker_blocks=3),
                 entries)
    gray = Image.fromarray(noisy[:, :, 0], "L")
    save_fixture(out, "gray", encode(gray, "JPEG", quality=90), entries)
    save_fixture(out, "gray_progressive_odd",
                 encode(Image.fromarray(noisy[:45, :61, 1], "L"), "JPEG", quality=90,
                        progressive=True), entries)
    # Pillow writes CMYK JPEGs inverted with an Adobe APP14 marker (transform 0), as Photoshop does.
    cmyk = Image.fromarray(
        np.concatenate([noisy, (255 - noisy[:, :, :1]) // 3], axis=2).astype(np.uint8), "CMYK"
    )
    save_fixture(out, "cmyk", encode(cmyk, "JPEG", quality=95), entries)
    save_fixture(out, "cmyk_progressive", encode(cmyk, "JPEG", quality=90, progressive=True),
                 entries)
    # A 4-component JPEG without the Adobe APP14 marker (libjpeg then assumes plain CMYK; Pillow
    # still reads it as inverted CMYK): the same file with its APP14 segment cut out.
    save_fixture(out, "cmyk_no_adobe", strip_app14(encode(cmyk, "JPEG", quality=95)), entries)
    # PNGs: 8-bit RGB, RGBA (alpha dropped by convert), palette, grayscale, 16-bit RGB.
    save_fixture(out, "png_rgb", encode(rgb, "PNG"), entries)
    rgba = Image.fromarray(np.concatenate([noisy, noisy[:, :, :1]], 2), "RGBA")
    save_fixture(out, "png_rgba", encode(rgba, "PNG"), entries)
    save_fixture(out, "png_palette", encode(rgb.convert("P"), "PNG"), entries)
    save_fixture(out, "png_gray", encode(gray, "PNG"), entries)
    # A real 10000x10000 grayscale JPEG: flat content compresses to a small file.
    big = Image.new("L", (10000, 10000), 128)
    save_fixture(out, "huge_gray", encode(big, "JPEG", quality=50), entries, header_only=True)
    with open(os.path.join(out, "fixtures.json"), "w") as f:
        json.dump(entries, f)
    print(f"wrote {len(entries)} fixtures to {out}")


def cmd_convert(args):
    """Pillow's Image.open(p).convert('RGB') of each given file, to <p>.rgb (HWC RGB8), and
    <p>.json with mode and size (for files made by the Rust tests, e.g. YCCK JPEGs Pillow can't
    write)."""
    for p in args.files:
        with Image.open(p) as im0:
            mode, size = im0.mode, im0.size
            rgb = np.asarray(im0.convert("RGB"), dtype=np.uint8)
        with open(p + ".rgb", "wb") as f:
            f.write(rgb.tobytes())
        with open(p + ".json", "w") as f:
            json.dump({"mode": mode, "w": size[0], "h": size[1]}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tensors")
    t.add_argument("--images", required=True, help="directory holding *.JPEG")
    t.add_argument("--out", required=True)
    t.add_argument("--config", action="append", required=True,
                   help="NAME:INTERP:RESIZE:CROP:M0,M1,M2:S0,S1,S2")
    t.add_argument("--limit", type=int, default=0)
    f = sub.add_parser("fixtures")
    f.add_argument("--out", required=True)
    c = sub.add_parser("convert")
    c.add_argument("files", nargs="+")
    args = ap.parse_args()
    if args.cmd == "convert":
        return cmd_convert(args)
    os.makedirs(args.out, exist_ok=True)
    {"tensors": cmd_tensors, "fixtures": cmd_fixtures}[args.cmd](args)


if __name__ == "__main__":
    main()
