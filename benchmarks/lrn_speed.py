"""A-LRN's LRN layer (§2.1): vggnet's layer against PyTorch's own, forward + backward, same run, as
a ratio.

    PYTHONPATH=src python benchmarks/lrn_speed.py [--batch 64] [--channels 16] [--size 64] [--steps 10]

The defaults are conv1_1's output in the Tiny ImageNet grid (width x1/4: 16 channels, crop 64,
batch 64), channels_last as the CPU policy lays it out. The baseline is `torch.nn.LocalResponseNorm`
in fp32 (on the CPU it takes a bf16 input only under autocast, which runs its pooling in fp32); both
run in fp32 and on the bf16 input that autocast training hands them. The two are checked to
compute the same function before they are timed.
"""

from __future__ import annotations

import argparse
import time

import torch

from train_speed import cpu_name  # the same folder
from vggnet.models.configs import LRN_PARAMS
from vggnet.models.vgg import LocalResponseNorm


def seconds_per_step(layer, x: torch.Tensor, steps: int, autocast: bool = False) -> float:
    """Mean seconds of one forward + backward of `layer` on `x` (after one warm-up step)."""
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        layer(x).float().sum().backward()
        t = time.perf_counter()
        for _ in range(steps):
            layer(x).float().sum().backward()
    return (time.perf_counter() - t) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    shape = (args.batch, args.channels, args.size, args.size)
    x = (torch.rand(shape) * 30).contiguous(memory_format=torch.channels_last)
    theirs = torch.nn.LocalResponseNorm(**LRN_PARAMS)
    ours = LocalResponseNorm(args.channels, **LRN_PARAMS)
    assert torch.allclose(ours(x), theirs(x), rtol=1e-5), "the two layers disagree"
    rows = {
        "torch.nn.LocalResponseNorm, fp32 (baseline)": seconds_per_step(theirs, x, args.steps),
        "vggnet LocalResponseNorm, fp32": seconds_per_step(ours, x, args.steps),
        "torch.nn.LocalResponseNorm, bf16 input, autocast": seconds_per_step(
            theirs, x.bfloat16(), args.steps, True
        ),
        "vggnet LocalResponseNorm, bf16 input, autocast": seconds_per_step(
            ours, x.bfloat16(), args.steps, True
        ),
    }
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, input {list(shape)}, channels_last\n")
    print("| layer | ms per forward + backward | speed-up |")
    print("|---|---|---|")
    base = next(iter(rows.values()))
    for name, sec in rows.items():
        print(f"| {name} | {sec * 1000:.0f} | {base / sec:.2f}x |")


if __name__ == "__main__":
    main()
