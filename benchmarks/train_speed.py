"""Training throughput of net D against a plain eager PyTorch loop, same run, as a ratio.

    PYTHONPATH=src python benchmarks/train_speed.py --device cuda [--batch 256] [--steps 30] [--compile]
        [--peak-tflops 989]
    PYTHONPATH=src python benchmarks/train_speed.py --device cpu --width 0.25 --fc-dim 256 --crop 64 \
        --batch 64

On the CPU the baseline is a plain fp32 NCHW loop over the same net (our D at the same width), and
"vggnet" runs with the device policy `auto` chose for this CPU (bf16 autocast + channels_last where
the CPU has amx_bf16 or avx512_bf16); "vggnet --amp off" separates the two gains. The CPU's model
and bf16 flags are printed with the table.

"ours" is vggnet's own training step (`vggnet.engine.train.train_step`, the function every epoch calls),
with the run's device policy: bf16 autocast, channels_last, cudnn.benchmark, fused SGD, uint8 batch
normalised on the device, no host synchronisation inside the timed steps. The baseline is the loop most
users write: torchvision's vgg16 (our own D if torchvision is missing), float32 batch, torch.amp
autocast, plain SGD. Data is synthetic and already on the device: this measures the training step
(the input pipeline has its own benchmark). One step of D costs ~3 x 15.47 GMAC = 92.8 GFLOP per image.

Targets: >= 50% of the GPU's bf16 dense peak and >= 1.3x the eager baseline.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from vggnet.data.transforms import Normalizer
from vggnet.engine.config import TrainConfig
from vggnet.engine.distributed import Dist
from vggnet.engine.objectives import Classification
from vggnet.engine.run import Run, make_optimizer, wrap
from vggnet.engine.train import train_step
from vggnet.models import PRESETS, complexity, create_model, init_weights
from vggnet.runtime.device import configure_backends, make_policy


def bench(step, steps, warmup, device):
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--fc-dim", type=int, default=4096)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--compile", action="store_true")
    p.add_argument(
        "--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100 SXM 989, H200 989)"
    )
    args = p.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    n, c = args.batch, args.crop
    images = torch.randint(0, 256, (n, 3, c, c), dtype=torch.uint8, device=dev)
    labels = torch.randint(0, 1000, (n,), device=dev)
    results = {}

    # ours (in a function, so that its memory is freed before the baseline runs)
    def measure_ours(amp="auto"):
        cfg = TrainConfig(
            arch="D",
            width=args.width,
            fc_dim=args.fc_dim,
            crop=c,
            batch_size=n,
            compile=args.compile,
            colour_shift=False,
            amp=amp,
        )
        policy = make_policy(dev, cfg.amp, cfg.channels_last)
        configure_backends(policy)
        net = policy.prepare(
            init_weights(
                create_model("D", 1000, width=args.width, fc_dim=args.fc_dim, crop_size=c), "gaussian"
            )
        )
        run = Run(
            cfg=cfg,
            dist=Dist(device=dev),
            policy=policy,
            objective=Classification(),
            run_dir=None,
            train_source=None,
            val_source=None,
            val_scale=c,
            sampler=None,
            loader=None,
            normalizer=Normalizer(PRESETS["vggnet"]).to(dev),
            net=net,
            model=wrap(cfg, Dist(device=dev), net),
            optimizer=make_optimizer(cfg, net, policy),
            schedule=None,
            meta=None,
            state=None,
        )
        batch = dict(images=images, labels=labels, alpha=None, bad=[])
        sums = torch.zeros(2, dtype=torch.float64, device=dev)
        step = iter(range(10**9))
        return bench(lambda: train_step(run, batch, 0, next(step), sums), args.steps, args.warmup, dev)

    chosen = make_policy(dev, "auto", "auto")
    results[f"vggnet ({chosen.precision}{', channels_last' if chosen.channels_last else ''})"] = (
        measure_ours()
    )
    if cuda:
        torch.cuda.empty_cache()
    elif chosen.amp:
        results["vggnet --amp off (fp32, channels_last)"] = measure_ours("off")

    # baseline: the usual eager AMP loop
    try:
        if not cuda or args.width != 1.0:
            raise ImportError("the same narrow net on both sides")
        import torchvision

        base = torchvision.models.vgg16().to(dev)
        name = "torchvision vgg16, eager AMP"
    except Exception:
        base = create_model("D", 1000, width=args.width, fc_dim=args.fc_dim, crop_size=c).to(dev)
        name = "plain eager loop, same D" + (", AMP" if cuda else ", fp32 NCHW")
    bopt = torch.optim.SGD(base.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    xf = images.float() / 255

    def baseline():
        with torch.autocast(dev.type, dtype=torch.bfloat16 if not cuda else torch.float16, enabled=cuda):
            loss = F.cross_entropy(base(xf), labels)
        loss.backward()
        bopt.step()
        bopt.zero_grad()

    results[name] = bench(baseline, args.steps, args.warmup, dev)
    gpu = (
        torch.cuda.get_device_name()
        if cuda
        else f"cpu: {cpu_name()} ({chosen.reason}), {torch.get_num_threads()} threads"
    )
    print(
        f"# D x{args.width:g} (fc {args.fc_dim}) at {c}, batch {n}, {gpu}, torch {torch.__version__}, "
        f"compile={args.compile}"
    )
    print("| loop | step ms | images/s | TFLOP/s | % of bf16 peak |")
    print("|---|---|---|---|---|")
    for k, sec in results.items():
        ips = n / sec
        # 2 FLOP per MAC, x3 for forward + backward: 92.8 GFLOP per image for D at 224.
        gflop = 6 * complexity("D", width=args.width, fc_dim=args.fc_dim, crop_size=c)["macs"] / 1e9
        tflops = ips * gflop / 1000
        print(
            f"| {k} | {sec * 1000:.0f} | {ips:.0f} | {tflops:.0f} | {100 * tflops / args.peak_tflops:.0f}% |"
        )
    vals = list(results.values())
    print(f"\nspeed-up over the baseline: {vals[-1] / vals[0]:.2f}x")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.partition(":")[2].strip() for ln in f if ln.startswith("model name")), "unknown")
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
