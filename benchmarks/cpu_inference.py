"""CPU inference: ``vggnet evaluate``'s own path (the device policy: channels_last, and bf16
autocast where the CPU has native bf16: amx_bf16 or avx512_bf16) against a plain eager PyTorch
VGG-16 (NCHW, fp32, same weights, same threads, same batches), in the same run, with the agreement
of their top-1 classes; and the peak memory (RSS) of dense evaluation at Q = 512 and of
``vggnet features`` over three scales, each against the process's RSS with the net loaded.

    python benchmarks/cpu_inference.py ../shared/data/imagenet-sample [--images 24 --dense-images 4]
        [--width 1 --fc-dim 4096] [--compile]

Network time only (decoding is the data pipeline's benchmark): images are decoded and rescaled
once, then both loops run over the same uint8 tensors. Centre crop at Q = 256; dense at
Q = {256, 384, 512} with flips (§3.2, §4.2). Target: >= 1.4x the eager baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vggnet.data.images import is_image_file, load_rgb
from vggnet.data.transforms import Normalizer, center_crop, rescale
from vggnet.eval.protocols import Evaluator
from vggnet.models import PRESETS, create_model, init_weights
from vggnet.runtime.device import DevicePolicy, make_policy


def pictures(folder: str, n: int, scales) -> list[dict]:
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if is_image_file(f))[:n]
    return [
        {q: torch.from_numpy(np.array(rescale(load_rgb(f), q))).permute(2, 0, 1) for q in scales}
        for f in files
    ]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def center_images_per_s(ev: Evaluator, images: list, q: int, batch: int = 8) -> tuple[float, torch.Tensor]:
    crops = torch.stack([center_crop(im[q], ev.crop) for im in images])
    ev.center(crops[:2])  # warm-up
    out = []
    seconds = timed(lambda: out.extend(ev.center(c) for c in crops.split(batch)))
    return len(crops) / seconds, torch.cat(out)


def dense_images_per_s(ev: Evaluator, images: list, scales) -> float:
    ev.dense(images[0][scales[0]][None])
    return len(images) / timed(lambda: [ev.dense(im[q][None]) for im in images for q in scales])


def rss_of(code: str) -> dict:
    """Run `code` in a fresh interpreter; its JSON output (with peak RSS in MB)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


MEMORY = """
import json, re
def status(key):
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
from vggnet.models import load_model
model, _ = load_model({ckpt!r})
loaded = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) from here on
from vggnet.cli import main
main({argv!r})
print(json.dumps(dict(loaded=loaded, peak=status("VmHWM"))))
"""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--dense-images", type=int, default=4)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--fc-dim", type=int, default=4096)
    p.add_argument("--compile", action="store_true", help="also torch.compile (inductor) on the CPU")
    p.add_argument("--no-memory", action="store_true")
    args = p.parse_args()
    scales = [256, 384, 512]
    torch.manual_seed(0)
    model = init_weights(create_model("D", 1000, width=args.width, fc_dim=args.fc_dim), "gaussian").eval()
    images = pictures(args.data, args.images, scales)
    norm = Normalizer(PRESETS["vggnet"])
    cpu = torch.device("cpu")
    variants = {
        "eager NCHW fp32 (baseline)": (model, DevicePolicy(cpu)),
        "channels_last, fp32": (model, DevicePolicy(cpu, False, True)),
        "vggnet (device policy)": (model, make_policy(cpu)),
    }
    if args.compile:
        variants["vggnet + torch.compile"] = (torch.compile(model), make_policy(cpu))
    print(
        f"# D (width x{args.width}, FC {args.fc_dim}) on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}; "
        f"{len(images)} ImageNet images (centre crop, Q=256), {args.dense_images} for dense (Q=256,384,512, "
        "flips)"
    )
    print(
        "| variant | settings | centre crop img/s | dense 3 scales img/s | top-1 same as baseline | "
        "largest posterior change |"
    )
    print("|---|---|---|---|---|---|")
    rates, reference = {}, None
    for name, (net, policy) in variants.items():
        policy.prepare(model)
        ev = Evaluator(net, norm, policy)
        ev.crop = model.crop_size
        with torch.no_grad():
            c, probs = center_images_per_s(ev, images, 256)
            d = dense_images_per_s(ev, images[: args.dense_images], scales)
        reference = probs if reference is None else reference
        rates[name] = (c, d)
        same = (probs.argmax(1) == reference.argmax(1)).float().mean().item()
        change = (probs - reference).abs().max().item()
        print(f"| {name} | {policy.describe()} | {c:.2f} | {d:.3f} | {100 * same:.0f}% | {change:.1e} |")
        model.to(memory_format=torch.contiguous_format)
    base = rates["eager NCHW fp32 (baseline)"]
    for name, (c, d) in rates.items():
        if name != "eager NCHW fp32 (baseline)":
            print(f"{name} / baseline: centre crop {c / base[0]:.2f}x, dense {d / base[1]:.2f}x")
    if args.no_memory:
        return
    with tempfile.TemporaryDirectory() as tmp:
        from vggnet.models import save_weights

        ckpt = str(Path(tmp) / "d.safetensors")
        save_weights(
            ckpt, model, dict(classes=[str(i) for i in range(1000)], preprocessing=PRESETS["vggnet"])
        )
        files = sorted(f for f in os.listdir(args.data) if is_image_file(f))[: args.dense_images]
        folder = Path(tmp) / "imgs" / "x"
        folder.mkdir(parents=True)
        for f in files:
            os.symlink(os.path.abspath(os.path.join(args.data, f)), folder / f)
        csv = Path(tmp) / "list.csv"
        csv.write_text("path,label\n" + "".join(f"x/{f},0\n" for f in files))
        runs = {
            "evaluate dense, Q=512": [
                "evaluate",
                "--checkpoint",
                ckpt,
                "--data",
                str(csv),
                "--scales",
                "512",
                "--protocol",
                "dense",
                "--workers",
                "0",
            ],
            "features fc7, Q=256,384,512": [
                "features",
                "--checkpoint",
                ckpt,
                "--data",
                str(Path(tmp) / "imgs"),
                "--scales",
                "256,384,512",
                "--out",
                str(Path(tmp) / "f.safetensors"),
                "--workers",
                "0",
            ],
        }
        print("\n| command | RSS with the net loaded (MB) | peak RSS (MB) | peak / loaded |")
        print("|---|---|---|---|")
        for name, argv in runs.items():
            m = rss_of(MEMORY.format(ckpt=ckpt, argv=argv))
            print(f"| {name} | {m['loaded']:.0f} | {m['peak']:.0f} | {m['peak'] / m['loaded']:.2f}x |")


if __name__ == "__main__":
    main()
