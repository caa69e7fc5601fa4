"""Appendix B's costs on the CPU: descriptors per second of net D (dense, three scales, flips:
``vggnet features``' own path) against the plain loop a user writes (one image and one scale at a
time, NCHW, fp32), and the linear-SVM fit time (C chosen on 20% held out, then refit) as the
number of training images grows, against linear growth from the smallest size.

    python benchmarks/transfer_speed.py ../shared/data/flowers17-160 [--images 8 --width 1 --fc-dim 4096]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from vggnet.data.datasets import image_folder
from vggnet.data.images import load_rgb
from vggnet.data.transforms import Normalizer, rescale
from vggnet.models import PRESETS, create_model, init_weights
from vggnet.runtime.device import make_policy
from vggnet.transfer.descriptors import compute_features
from vggnet.transfer.svm import fit_svm


def plain_loop(model, norm, paths, scales) -> float:
    """Images/s of the usual loop: decode, then per scale the image and its flip, NCHW fp32."""
    t = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            img = load_rgb(path)
            for q in scales:
                x = torch.from_numpy(np.array(rescale(img, q))).permute(2, 0, 1)[None]
                for im in (x, x.flip(-1)):
                    model.extract(norm(im), ["fc7"])["fc7"].mean((2, 3))
    return len(paths) / (time.perf_counter() - t)


def svm_times(sizes, dim: int, classes: int = 17) -> list[tuple[int, float]]:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (classes, dim))
    out = []
    for n in [sizes[0]] + list(sizes):  # the first fit warms the libraries up and is not reported
        y = np.arange(n) % classes
        x = centres[y] + rng.normal(0, 3, (n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        t = time.perf_counter()
        fit_svm(x.astype(np.float32), y, "single", n_classes=classes)
        out.append((n, time.perf_counter() - t))
    return out[1:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--fc-dim", type=int, default=4096)
    p.add_argument("--scales", default="256,384,512")
    p.add_argument("--svm-sizes", default="250,500,1000,2000")
    args = p.parse_args()
    scales = [int(q) for q in args.scales.split(",")]
    torch.manual_seed(0)
    model = init_weights(create_model("D", 1000, width=args.width, fc_dim=args.fc_dim), "gaussian").eval()
    source = image_folder(args.data)
    source = source.subset(np.linspace(0, len(source) - 1, args.images).astype(int))
    norm = Normalizer(PRESETS["vggnet"])
    print(
        f"# D (width x{args.width}, FC {args.fc_dim}), {args.images} images of {args.data}, Q={args.scales}, "
        f"flips; {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}"
    )
    base = plain_loop(model, norm, [s[0] for s in source.samples], scales)
    policy = make_policy(torch.device("cpu"))
    policy.prepare(model)
    ours = compute_features(model, norm, source, scales, "fc7", policy=policy, workers=1)["images_per_s"]
    print("| loop | descriptors/s |\n|---|---|")
    print(f"| plain (one image and scale at a time, NCHW) | {base:.3f} |\n| vggnet features | {ours:.3f} |")
    print(f"\nvggnet / plain: {ours / base:.2f}x")
    dim = 2 * args.fc_dim  # e.g. two scales stacked
    rows = svm_times([int(n) for n in args.svm_sizes.split(",")], dim)
    n0, t0 = rows[0]
    print(
        f"\n| training images ({dim}-D, 17 classes) | SVM fit with C selection (s) | vs linear growth from "
        f"{n0} |"
    )
    print("|---|---|---|")
    for n, t in rows:
        print(f"| {n} | {t:.2f} | {t / (t0 * n / n0):.2f}x |")


if __name__ == "__main__":
    main()
