"""``vggnet demo``: the whole system on built-in data, in minutes on a laptop CPU.

It generates the synthetic data set (or takes ``--data``), computes its colour statistics, trains
a narrow net A with scale jittering (§3.1), evaluates it with every protocol of §3.2 at one and at
three test scales (§4.1-4.3), and writes a report folder: ``report.md`` with the tables,
``curves.png``, the checkpoint and every intermediate artefact. Every number in the report is
measured in this run.

The demo net is narrow (a quarter of the paper's widths, FC layers of 256) and small-input
(crop 32, S in [32, 48]: the paper's 224 and [256, 512] scaled down) so that it trains on two CPU
cores. Such narrow nets barely learn with dropout 0.5 on 256-wide FC layers, so the demo uses
batch normalisation and no dropout; everything else is the paper's recipe.
"""
from __future__ import annotations

import os
import platform
import time
from datetime import datetime
from pathlib import Path

from .errors import VGGError
from .fileio import write_text

DEMO_RECIPE = dict(arch="A", width=0.25, fc_dim=256, crop=32, scale="32:48", batch_norm=True, dropout=0.0,
                   batch_size=64, lr=0.05, lr_patience=2, init="glorot", epochs=25)
SYNTH = dict(classes=10, per_class=500, val_per_class=50, size=40, seed=0)


def _split_user_data(data: Path):
    """A user's folder: train/ and val/ sub-folders if it has them, else one folder with a
    held-out part."""
    if (data / "train").is_dir() and (data / "val").is_dir():
        return str(data / "train"), str(data / "val")
    return str(data), None


def run_demo(out=None, data=None, epochs=None, workers=None, progress=True, **overrides) -> dict:
    from .data.synth import make_synthetic
    from .engine import load_config, train
    from .engine.plot import plot_run
    from .eval.runner import evaluate, format_table

    t_start = time.perf_counter()
    out = Path(out) if out else Path.cwd() / datetime.now().strftime("vggnet-demo-%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        raise VGGError(f"{out} exists and is not empty; choose a new --out")
    if data is not None and not Path(data).is_dir():
        raise VGGError(f"--data {data}: not a folder (expected class sub-folders, or train/ and val/)")
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    out.mkdir(parents=True, exist_ok=True)
    timings = {}

    def say(msg):
        if progress:
            print(msg, flush=True)

    # 1. data
    t = time.perf_counter()
    if data is None:
        say(f"[1/5] generating the synthetic data set ({SYNTH['classes']} classes, {SYNTH['size']}px) ...")
        make_synthetic(out / "data", workers=max(1, workers), **SYNTH)
        train_dir, val_dir = str(out / "data" / "train"), str(out / "data" / "val")
        data_desc = (f"built-in synthetic set: {SYNTH['classes']} classes, {SYNTH['per_class']} training and "
                     f"{SYNTH['val_per_class']} validation images per class, {SYNTH['size']}x{SYNTH['size']} JPEG")
    else:
        train_dir, val_dir = _split_user_data(Path(data))
        data_desc = f"{data}" + (" (train/ and val/)" if val_dir else " (5% held out for validation)")
        say(f"[1/5] using {data_desc}")
    timings["data"] = time.perf_counter() - t

    # 2-3. statistics and training
    recipe = dict(DEMO_RECIPE, **{k: v for k, v in overrides.items() if v is not None})
    if epochs is not None:
        recipe["epochs"] = epochs
    say(f"[2/5] colour statistics, then [3/5] training a narrow net {recipe['arch']} "
        f"(width x{recipe['width']}, crop {recipe['crop']}, S in [{recipe['scale'].replace(':', ', ')}]) "
        f"for up to {recipe['epochs']} epochs ...")
    cfg = load_config(None, dict(recipe, data=train_dir, val_data=val_dir, out=str(out / "run"), workers=workers,
                                 progress=progress, recipe="vggnet demo"))
    t = time.perf_counter()
    result = train(cfg)
    timings["train"] = time.perf_counter() - t
    if result["status"] != "done":
        raise VGGError(f"training stopped: {result.get('stop_reason')}")
    curves = plot_run(out / "run", out / "curves.png")

    # 4. evaluation: every protocol, single scale (§4.1) and three scales (§4.2)
    say("[4/5] evaluating with every protocol at one and three test scales ...")
    ckpt = out / "run" / "best.safetensors"
    protocols = ["center", "dense", "multicrop", "dense+multicrop"]
    eval_data = val_dir or train_dir
    t = time.perf_counter()
    single = evaluate(ckpt, eval_data, protocols, out=out / "eval-single", workers=workers, progress=progress)
    multi = evaluate(ckpt, eval_data, protocols, multi_scale=True, out=out / "eval-multi", workers=workers,
                     progress=progress)
    timings["evaluate"] = time.perf_counter() - t
    if progress:
        print(format_table(single))
        print(format_table(multi))

    # 5. report
    say("[5/5] writing the report ...")
    timings["total"] = time.perf_counter() - t_start
    report = _report(out, data_desc, recipe, result, single, multi, timings, curves)
    write_text(out / "report.md", report)
    return dict(out=str(out), report=str(out / "report.md"), train=result, single=single, multi=multi,
                timings=timings, classes=single["classes"])


def _report(out, data_desc, recipe, result, single, multi, timings, curves) -> str:
    hist = result["history"]
    chance = 100 * (1 - 1 / single["classes"])
    best = result["best"] or {}
    lines = ["# vggnet demo report", "",
             f"Made {datetime.now():%Y-%m-%d %H:%M} on {platform.machine()} with {os.cpu_count()} cores "
             f"(total {timings['total']:.0f} s: data {timings['data']:.0f} s, training {timings['train']:.0f} s, "
             f"evaluation {timings['evaluate']:.0f} s). Every number below was measured in this run.", "",
             "## Data", "", f"- {data_desc}", f"- {single['images']} validation images, {single['classes']} classes "
             f"(chance top-1 error {chance:.1f}%)", "",
             "## Training (§3.1)", "",
             f"- net {recipe['arch']}, widths x{recipe['width']}, FC {recipe['fc_dim']}, crop {recipe['crop']}, "
             f"scale jittering S in [{recipe['scale'].replace(':', ';')}], batch {recipe['batch_size']}, SGD momentum 0.9, "
             f"weight decay 5e-4, lr {recipe['lr']} divided by 10 on plateau"
             + (", batch norm, no dropout (narrow-net demo deviation, see `vggnet.demo`)" if recipe.get("batch_norm") else ""),
             f"- {len(hist)} epochs ({result.get('stop_reason', '')}); best validation centre-crop error "
             f"top-1 {best.get('top1_err', float('nan')):.1f}%, top-5 {best.get('top5_err', float('nan')):.1f}% "
             f"at epoch {best.get('epoch', '-')}; {hist[-1]['images_per_s']:.0f} training images/s",
             "", "![training curves](curves.png)", "",
             "| epoch | lr | train loss | train top-1 err | val top-1 err | val top-5 err |", "|---|---|---|---|---|---|"]
    for r in hist:
        lines.append(f"| {r['epoch']} | {r['lr']:.0e} | {r['train_loss']:.3f} | {r['train_top1_err']:.1f} | "
                     f"{r['val_top1_err']:.1f} | {r['val_top5_err']:.1f} |")
    lines += ["", "## Evaluation (§3.2, §4)", "",
              "| protocol | test Q | top-1 err (%) | top-5 err (%) | images/s |", "|---|---|---|---|---|"]
    for res in (single, multi):
        qs = ",".join(map(str, res["scales"]))
        for p, r in res["protocols"].items():
            lines.append(f"| {p} | {qs} | {r['top1_err']:.1f} | {r['top5_err']:.1f} | {r['images_per_s']:.0f} |")
    lines += ["", "Reproduce any row:", "", "```bash",
              f"vggnet evaluate --checkpoint {out}/run/best.safetensors --data {single['data']} "
              f"--protocol center dense multicrop dense+multicrop --multi-scale --out NEW_DIR", "```", "",
              "## Files", "", "- `run/`: config.yaml, stats.json, log.jsonl, best/final/last checkpoints",
              "- `eval-single/`, `eval-multi/`: results.json and per-image posteriors (for `vggnet fuse`)",
              "- `curves.png`: loss, error and learning-rate curves", ""]
    return "\n".join(lines)


def summary_table(result: dict) -> str:
    single, multi = result["single"], result["multi"]
    best = result["train"]["best"] or {}
    rows = [f"trained {len(result['train']['history'])} epochs in {result['timings']['train']:.0f} s; "
            f"chance top-1 error {100 * (1 - 1 / single['classes']):.0f}%",
            f"{'protocol':<16} {'Q':<10} {'top-1 err':>9} {'top-5 err':>9}"]
    for res in (single, multi):
        qs = ",".join(map(str, res["scales"]))
        for p, r in res["protocols"].items():
            rows.append(f"{p:<16} {qs:<10} {r['top1_err']:>8.1f}% {r['top5_err']:>8.1f}%")
    rows.append(f"best validation centre crop during training: top-1 {best.get('top1_err', float('nan')):.1f}%")
    return "\n".join(rows)
