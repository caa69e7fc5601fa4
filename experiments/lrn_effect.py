"""How much A-LRN's LRN layer (§2.1) changes its input, measured on real images.

    PYTHONPATH=src python experiments/lrn_effect.py --checkpoint runs/tiny-cpu/A-LRN-S73/final.safetensors \
        --data runs/tiny-cpu/lists/val.csv --root tiny-imagenet-200 [--images 500] [--scale 73]

The layer divides each activation a by (k + alpha * S)^beta, S the sum of squares over 5 adjacent
channels (k = 2, alpha = 1e-4, beta = 0.75). Beyond the constant k^beta, it normalises only where
alpha * S is not small against k. This script records r = alpha * S / k at every position and
channel of the layer's input on centre crops of the first `--images` images of `--data` and
prints how far the layer's factor (1 + r)^-beta moves from 1: a net trained with batch norm before
the layer (the Tiny ImageNet grid's) may feed it activations too small for LRN to act, which makes
"LRN does not help" true for a trivial reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from vggnet.data.images import load_rgb
from vggnet.data.transforms import Normalizer, center_crop, rescale
from vggnet.models import load_model


def ratios(model, images: list[torch.Tensor], norm: Normalizer) -> torch.Tensor:
    """alpha * S / k at every position and channel of the LRN layer's input."""
    lrn = next(m for m in model.features if isinstance(m, torch.nn.LocalResponseNorm))
    seen = []

    def hook(module, inputs):
        x = inputs[0].float()
        sums = torch.nn.functional.conv2d(x * x, module.window.float())
        seen.append((sums * (module.alpha / module.size) / module.k).flatten())

    handle = lrn.register_forward_pre_hook(hook)
    with torch.no_grad():
        for batch in torch.stack(images).split(64):
            model(norm(batch))
    handle.remove()
    return torch.cat(seen)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="CSV of path,label (the validation images)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--scale", type=int, default=73, help="test scale Q (the net's training S)")
    ap.add_argument("--out", help="JSON file for the figures")
    args = ap.parse_args()
    model, meta = load_model(args.checkpoint)
    if not any(isinstance(m, torch.nn.LocalResponseNorm) for m in model.features):
        sys.exit(f"error: {args.checkpoint} has no LRN layer (only A-LRN has one)")
    with open(args.data) as f:
        paths = [row["path"] for row in csv.DictReader(f)][: args.images]
    crop = model.crop_size
    images = [
        center_crop(
            torch.from_numpy(np.array(rescale(load_rgb(Path(args.root) / p), args.scale))).permute(2, 0, 1),
            crop,
        )
        for p in paths
    ]
    r = ratios(model.eval(), images, Normalizer(meta.preprocessing))
    q = torch.quantile(r[torch.randperm(len(r))[:1_000_000]], torch.tensor([0.5, 0.99])).tolist()
    beta = 0.75
    figures = dict(
        images=len(images),
        scale=args.scale,
        r_median=q[0],
        r_p99=q[1],
        r_max=r.max().item(),
        factor_change_median_pct=100 * (1 - (1 + q[0]) ** -beta),
        factor_change_p99_pct=100 * (1 - (1 + q[1]) ** -beta),
        factor_change_max_pct=100 * (1 - (1 + r.max().item()) ** -beta),
    )
    print(
        f"LRN on {len(images)} images at Q = {args.scale}: alpha*S/k median {q[0]:.2g}, 99th percentile "
        f"{q[1]:.2g}, max {figures['r_max']:.2g}; beyond the constant k^-beta the layer scales an "
        f"activation down by {figures['factor_change_median_pct']:.2g}% (median), "
        f"{figures['factor_change_p99_pct']:.2g}% (99th percentile), "
        f"{figures['factor_change_max_pct']:.2g}% (max)"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
