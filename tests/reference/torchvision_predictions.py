"""Independent reference: top-5 of a pair's TorchScript models on the sample images with torchvision's
own preprocessing (PIL decode, transforms.Resize/CenterCrop/ToTensor/Normalize), as the manifest
says. Writes {image_id: {"float": [top5...], "quantized": [top5...]}} as JSON."""
import argparse
import json
import os
import pathlib
import sys

import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "exporter"))
import loading  # noqa: E402  (loads and feeds each file as its manifest says, as qcam does)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--images", required=True, help="folder of JPEGs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=25)
    args = ap.parse_args()

    manifest_path = pathlib.Path(args.manifest)
    m = json.loads(manifest_path.read_text())
    pre = m["preprocess"]
    interp = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}[pre["interpolation"]]
    tf = transforms.Compose([
        transforms.Resize(pre["resize"], interpolation=interp),
        transforms.CenterCrop(pre["crop"]),
        transforms.ToTensor(),
        transforms.Normalize(pre["mean"], pre["std"]),
    ])
    torch.set_num_threads(2)
    files = sorted(p for p in pathlib.Path(args.images).iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    out = {p.stem: {} for p in files}
    for variant in ("float", "quantized"):
        if variant == "quantized":
            loading.set_engine(m)
        model = loading.load(str(manifest_path.parent), m, variant)
        with torch.no_grad():
            for i in range(0, len(files), args.batch):
                chunk = files[i:i + args.batch]
                x = torch.stack([tf(Image.open(p).convert("RGB")) for p in chunk])
                logits, _ = model(loading.prepare(x, m[variant]))
                # top-1 by argmax: torch documents it as the first maximal index, the tie rule
                # qcam uses too (int8 logits sit on a coarse grid, so exact ties do happen).
                top1 = logits.argmax(dim=1).tolist()
                top5 = logits.topk(5, dim=1).indices.tolist()
                for p, t1, t5 in zip(chunk, top1, top5):
                    out[p.stem][variant] = [t1] + [c for c in t5 if c != t1][:4]
    pathlib.Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
