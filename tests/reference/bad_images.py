"""Images for the bad-input corpus of tests/bad_input.rs, made with Pillow from one real ImageNet file,
plus what Pillow itself decodes them to (the reference qcam must match).

    python bad_images.py SRC.JPEG OUT_DIR

writes OUT_DIR/<kind>.JPEG for each kind below (whatever the real format: the name lies on purpose
for `png`), OUT_DIR/<kind>.rgb = `Image.open(f).convert('RGB').tobytes()` for every kind but `huge`,
and OUT_DIR/meta.json = {kind: {format, mode, size}} as Pillow opens the file.
"""

import json
import sys
from pathlib import Path

from PIL import Image


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    real = Image.open(src).convert("RGB")
    made = {
        "src": lambda p: p.write_bytes(src.read_bytes()),
        # ImageNet val has a PNG named .JPEG.
        "png": lambda p: real.save(p, format="PNG"),
        # ImageNet val has CMYK and grayscale JPEGs; Pillow writes CMYK as Adobe-inverted.
        "cmyk": lambda p: real.convert("CMYK").save(p, format="JPEG", quality=90),
        "gray": lambda p: real.convert("L").save(p, format="JPEG", quality=90),
        "one_by_one": lambda p: Image.new("RGB", (1, 1), (200, 100, 30)).save(p, format="JPEG", quality=95),
        # A real 10,000 x 10,000 file (flat grey, so it is small on disk: ~100 MP only once decoded).
        "huge": lambda p: Image.new("L", (10_000, 10_000), 128).save(p, format="JPEG", quality=50),
        "white": lambda p: Image.new("RGB", (300, 300), (255, 255, 255)).save(p, format="JPEG", quality=95),
    }
    meta = {}
    for kind, make in made.items():
        path = out / f"{kind}.JPEG"
        make(path)
        with Image.open(path) as im:
            meta[kind] = {"format": im.format, "mode": im.mode, "size": list(im.size)}
            if kind != "huge":
                (out / f"{kind}.rgb").write_bytes(im.convert("RGB").tobytes())
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
