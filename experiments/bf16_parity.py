"""Is bf16 training on the CPU safe? Two same-seed runs, fp32 and bf16, on real images, against the
noise of training itself (the same fp32 run with another seed).

    python experiments/bf16_parity.py --data /path/to/tiny-imagenet-200 [--classes 20 --epochs 4]

Net D (x1/4, FC 256, batch norm) at crop 64, S = 73, on the first `--classes` classes of
wnids.txt (500 training images each; 10% of them held out for the curves), evaluated on their
Tiny ImageNet validation images (centre crop). Writes the "bf16-parity" section of
docs/BENCHMARKS.md and docs/img/bf16-parity.png; resumes (finished runs are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, VGGNET, run, shown, write_section  # noqa: E402
from tiny import NARROW, cpu_line, make_lists  # noqa: E402

RUNS = {"fp32 seed 0": ("off", 0), "bf16 seed 0": ("on", 0), "fp32 seed 1": ("off", 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the tiny-imagenet-200 folder")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bf16-parity"))
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args()
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    lists = make_lists(data, out, dict(classes=args.classes), log)
    commands, rows = {}, {}
    for name, (amp, seed) in RUNS.items():
        rd = out / name.replace(" ", "-")
        cmd = VGGNET + [
            "train",
            "--arch",
            "D",
            *NARROW,
            "--crop",
            64,
            "--scale",
            73,
            "--data",
            lists / "train.csv",
            "--data-root",
            data,
            "--val-fraction",
            0.1,
            "--batch-size",
            64,
            "--lr",
            0.05,
            "--epochs",
            args.epochs,
            "--lr-milestones",
            args.epochs - 1,
            "--amp",
            amp,
            "--seed",
            seed,
            "--workers",
            args.workers,
            "--no-progress",
            "--out",
            rd,
            "--init",
            "glorot",
        ]
        commands[f"train {name}"] = shown(cmd)
        t = time.time()
        run(cmd + (["--resume"] if (rd / "last.safetensors").exists() else []), log, rd / "final.safetensors")
        ev = out / "eval" / rd.name
        cmd = VGGNET + [
            "evaluate",
            "--checkpoint",
            rd / "final.safetensors",
            "--data",
            lists / "val.csv",
            "--root",
            data,
            "--protocol",
            "center",
            "--amp",
            "off",
            "--out",
            ev,
        ]
        commands[f"evaluate {name}"] = shown(cmd)
        run(cmd, log, ev / "results.json")
        history = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines() if x.strip()]
        result = json.loads((ev / "results.json").read_text())["protocols"]["center"]
        rows[name] = dict(
            history=history, val=result, seconds=sum(h.get("epoch_seconds", 0) for h in history)
        )
        print(f"{name}: {time.time() - t:.0f} s")
    write(rows, commands, args)


def write(rows: dict, commands: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, r in rows.items():
        ep = [h["epoch"] for h in r["history"]]
        ax[0].plot(ep, [h["train_loss"] for h in r["history"]], "o-", label=name)
        ax[1].plot(ep, [h["val_top1_err"] for h in r["history"]], "o-", label=name)
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].set(title="top-1 error (%), held-out training slice", xlabel="epoch")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
        a.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    png = ROOT / "docs" / "img" / "bf16-parity.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    a, b, c = (rows[k]["val"]["top1_err"] for k in RUNS)
    L = [
        f"Machine: {cpu_line()}; torch 2.13.0+cpu. Net D x1/4 (FC 256, batch norm), crop 64, S = 73, batch "
        "64, "
        f"lr 0.05 divided by 10 after epoch {args.epochs - 1}, {args.epochs} epochs, on the first "
        f"{args.classes} "
        f"classes of Tiny ImageNet (wnids.txt order; 10% of the training images held out for the curves); "
        f"error on their validation images (centre crop, fp32 evaluation).",
        "",
        "| run | final train loss | held-out top-1 per epoch | validation top-1 | top-5 | s per epoch |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        h = r["history"]
        per = ", ".join(f"{x['val_top1_err']:.1f}" for x in h)
        L.append(
            f"| {name} | {h[-1]['train_loss']:.3f} | {per} | {r['val']['top1_err']:.1f} | "
            f"{r['val']['top5_err']:.1f} | {r['seconds'] / max(1, len(h)):.0f} |"
        )
    L += [
        "",
        f"bf16 vs fp32 with the same seed: {b - a:+.1f} points of validation top-1; fp32 with another seed: "
        f"{c - a:+.1f} points (the noise of training itself). "
        + ("Within noise." if abs(b - a) <= max(abs(c - a), 1.0) else "Outside that noise: see the curves."),
        "",
        "![bf16 vs fp32 training curves](img/bf16-parity.png)",
        "",
        "Commands:",
        "",
    ]
    L += [
        f"- {k}: `{v.replace(str(Path(args.data).resolve()), 'tiny-imagenet-200')}`"
        for k, v in commands.items()
    ]
    write_section(ROOT / "docs" / "BENCHMARKS.md", "bf16-parity", "\n".join(L))
    print("wrote docs/BENCHMARKS.md (bf16-parity)")


if __name__ == "__main__":
    main()
