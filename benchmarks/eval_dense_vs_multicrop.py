"""Dense vs multi-crop evaluation speed (§3.2): images/s of 3-scale dense evaluation (with flips)
and of 150-crop evaluation (5x5 grid x 2 flips x 3 scales), same model, same images, one run.
The paper argues dense is the efficient one; expect a ratio of ~5-7x in its favour.

    python benchmarks/eval_dense_vs_multicrop.py [--arch D --width 1 --fc-dim 4096] [--images 16]
        [--scales 256,384,512] [--device cuda] [--data FOLDER]

Without --data, random 4:3 images are used (decoding is not measured: both protocols share it).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from vggnet.data.transforms import Normalizer, rescale
from vggnet.eval.protocols import Evaluator
from vggnet.models import create_model


def make_images(n, scales, data=None):
    import numpy as np
    from PIL import Image

    if data:
        from vggnet.data.images import is_image_file, load_rgb

        files = sorted(os.path.join(data, f) for f in os.listdir(data) if is_image_file(f))[:n]
        pics = [load_rgb(f) for f in files]
    else:
        rng = np.random.default_rng(0)
        pics = [Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)) for _ in range(n)]
    return [{q: torch.from_numpy(np.array(rescale(p, q))).permute(2, 0, 1) for q in scales} for p in pics]


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="D")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--fc-dim", type=int, default=512)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--scales", default="256,384,512")
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data")
    args = p.parse_args()
    device = torch.device(args.device)
    scales = [int(q) for q in args.scales.split(",")]
    model = (
        create_model(args.arch, 1000, width=args.width, fc_dim=args.fc_dim, crop_size=args.crop)
        .eval()
        .to(device)
    )
    cuda = device.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    ev = Evaluator(
        model,
        Normalizer({"mean": [123.68, 116.78, 103.94]}).to(device),
        device,
        amp=cuda,
        channels_last=cuda,
        crop_batch=50,
    )
    images = make_images(args.images, scales, args.data)

    def dense():
        for im in images:
            for q in scales:
                ev.dense(im[q][None])

    def crops():
        for im in images:
            for q in scales:
                ev.multicrop(im[q])

    ev.dense(images[0][scales[0]][None]), ev.multicrop(images[0][scales[0]])  # warm-up
    t_dense, t_crop = timed(dense, device), timed(crops, device)
    n = len(images)
    print(
        f"# {args.arch} width x{args.width} fc {args.fc_dim}, crop {args.crop}, Q={{{args.scales}}}, {n} "
        "images, "
        f"{device} ({torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores), torch {torch.__version__}"
    )
    print("| protocol | network passes per image | images/s |")
    print("|---|---|---|")
    print(f"| dense, 3 scales, 2 flips | {2 * len(scales)} | {n / t_dense:.2f} |")
    print(f"| multi-crop, 150 crops | {50 * len(scales)} crops | {n / t_crop:.2f} |")
    print(f"\ndense / multi-crop speed ratio: {t_crop / t_dense:.1f}x")


if __name__ == "__main__":
    main()
