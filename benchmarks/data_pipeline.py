"""Data-pipeline throughput: the training transform (S in [Smin, Smax], crop, flip, uint8 out) on
real ImageNet-size JPEGs, per worker process, side by side with a naive baseline in the same run
(full decode with Pillow, rescale the whole image, crop).

    python benchmarks/data_pipeline.py ../shared/data/imagenet-sample [--workers 1 2] [--passes 2]

Target: >= 400 images/s per core, decode included.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from PIL import Image

from vggnet.data.images import is_image_file, load_rgb
from vggnet.data.transforms import TrainTransform, scaled_size


def naive(path, rng, smin, smax, crop):
    img = Image.open(path).convert("RGB")
    s = int(rng.integers(smin, smax + 1))
    w, h = scaled_size(img.width, img.height, s)
    img = img.resize((w, h), Image.BILINEAR)
    x, y = int(rng.integers(0, w - crop + 1)), int(rng.integers(0, h - crop + 1))
    arr = np.asarray(img.crop((x, y, x + crop, y + crop)))
    return arr[:, ::-1] if rng.random() < 0.5 else arr


class Items(torch.utils.data.Dataset):
    def __init__(self, paths, fn):
        self.paths, self.fn = paths, fn

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        arr = self.fn(self.paths[i], np.random.default_rng(i))
        return torch.from_numpy(np.array(arr)).permute(2, 0, 1)


def measure(paths, fn, workers, batch=64):
    loader = torch.utils.data.DataLoader(
        Items(paths, fn),
        batch_size=batch,
        num_workers=workers,
        worker_init_fn=lambda _: torch.set_num_threads(1),
        prefetch_factor=4,
    )
    it = iter(loader)
    next(it)  # workers started and warm
    start, n = time.perf_counter(), 0
    for b in it:
        n += b.shape[0]
    return n / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--scale", default="256:512")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--passes", type=int, default=2, help="passes over the files per measurement")
    p.add_argument("--repeats", type=int, default=3, help="measurements per setting; the median is reported")
    args = p.parse_args()
    files = sorted(os.path.join(args.data, f) for f in os.listdir(args.data) if is_image_file(f))
    paths = files * args.passes
    t = TrainTransform(args.scale, args.crop)
    smin, smax = t.smin, t.smax

    def ours(path, rng):
        s = t.draw_scale(rng)
        return t.apply(load_rgb(path, min_side=s), s, rng)[0]

    def base(path, rng):
        return naive(path, rng, smin, smax, args.crop)

    print(
        f"# {len(files)} files x {args.passes} passes, S in [{smin},{smax}], crop {args.crop}, uint8 out; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    )
    print(f"(median of {args.repeats} measurements, alternating vggnet and naive)")
    print("| workers | vggnet img/s | per worker | naive img/s | per worker | speed-up |")
    print("|---|---|---|---|---|---|")
    for w in args.workers:
        runs = [(measure(paths, ours, w), measure(paths, base, w)) for _ in range(args.repeats)]
        a, b = float(np.median([r[0] for r in runs])), float(np.median([r[1] for r in runs]))
        print(f"| {w} | {a:.0f} | {a / w:.0f} | {b:.0f} | {b / w:.0f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
