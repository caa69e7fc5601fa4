"""``vggnet demo``: the whole system on built-in data, in minutes on a laptop CPU.

It generates the synthetic data set (or takes ``--data``), computes its colour statistics, trains
a narrow net A with scale jittering (§3.1), evaluates it with every protocol of §3.2 at one and at
three test scales (§4.1-4.3), and writes a report folder: ``report.md`` with the tables,
``curves.png``, the checkpoint and every intermediate artefact. Every number in the report is
measured in this run.

The demo's recipe is ``configs/demo.yaml``: the paper's recipe shrunk to train in minutes on two
CPU cores (narrow net A, crop 32, S in [32, 48]; batch norm and no dropout, for the reason given
there). Given a folder without ``train/`` and ``val/``, the demo holds out part of it for
validation and evaluates on exactly those held-out images.
"""

from __future__ import annotations

import csv
import io
import os
import platform
import shlex
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

from .data.datasets import open_source, split_holdout
from .data.synth import make_synthetic
from .engine import load_config, train
from .engine.config import RECIPES, check_settings
from .engine.objectives import objective_for
from .engine.plot import plot_run
from .engine.run import open_data
from .errors import VGGError
from .eval.runner import evaluate, format_table
from .fileio import write_text
from .tables import columns, error_columns, render

SYNTH = dict(classes=10, per_class=500, val_per_class=50, size=40, seed=0)


def _split_user_data(data: Path):
    """A user's folder: train/ and val/ sub-folders if it has them, else one folder with a
    held-out part."""
    if (data / "train").is_dir() and (data / "val").is_dir():
        return str(data / "train"), str(data / "val")
    return str(data), None


def command() -> str:
    """How a new shell runs ``vggnet``: the name when it is on PATH (an activated environment, a
    system install), else the installed script in full (``make demo`` runs ``.venv/bin/vggnet``
    from a shell that has not activated the environment), else this interpreter with ``-m``."""
    script = Path(sys.executable).parent / "vggnet"  # not resolved: a venv's python is a link
    found = shutil.which("vggnet")
    if found and (not script.is_file() or Path(found).resolve() == script.resolve()):
        return "vggnet"
    if script.is_file():
        return shlex.quote(str(script.absolute()))
    return f"{shlex.quote(sys.executable)} -m vggnet"


def path_hint() -> str:
    """What to type so that ``vggnet`` works as the README writes it ("" when it already does)."""
    name = command()
    if name == "vggnet":
        return ""
    bin_dir = Path(sys.executable).parent
    activate = bin_dir / "activate"
    return (
        f"`vggnet` is not on this shell's PATH: run `source {activate}` (in each new shell) to use the "
        f"commands as the README writes them, or call `{name}`"
        if activate.is_file()
        else f"`vggnet` is not on this shell's PATH: call `{name}`"
    )


def _heldout_list(cfg, out: Path) -> str:
    """The images training held out for validation (same split, same seed), as a label file that
    evaluation reads: a demo never reports training images as validation images."""

    source = open_source(cfg.data)
    _, held = split_holdout(source, cfg.val_fraction, cfg.seed)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quoted: a name may hold a comma
    writer.writerow(["path", "label"])
    writer.writerows([i, source.classes[label]] for i, (_, label) in zip(held.ids, held.samples))
    write_text(out / "val-heldout.csv", text.getvalue(), errors="surrogateescape")  # names as on disk
    return str(out / "val-heldout.csv")


def _plan(out, data, workers, progress, overrides):
    """The report folder, the data folders and the recipe, every check made before anything is
    written (a bad setting is refused before the data set is generated)."""

    out = Path(out) if out else Path.cwd() / datetime.now().strftime("vggnet-demo-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise VGGError(f"{out} is a file; give a new folder for --out")
    if out.exists() and any(out.iterdir()):
        raise VGGError(f"{out} exists and is not empty; choose a new --out")
    if data is not None and not Path(data).is_dir():
        raise VGGError(f"--data {data}: not a folder (expected class sub-folders, or train/ and val/)")
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if data is None:
        train_dir, val_dir = str(out / "data" / "train"), str(out / "data" / "val")
    else:
        train_dir, val_dir = _split_user_data(Path(data))
    cfg = load_config(
        str(RECIPES / "demo.yaml"),
        dict(
            overrides,
            data=train_dir,
            val_data=val_dir,
            out=str(out / "run"),
            workers=workers,
            progress=progress,
        ),
    )
    check_settings(cfg)
    if data is not None:  # and the user's images are found before the report folder is made
        objective_for(cfg).check_source(open_data(cfg)[0])
    return out, cfg, train_dir, val_dir, workers


def _evaluate_all(cfg, out: Path, train_dir, val_dir, workers, progress) -> tuple[dict, dict]:
    """Every protocol at one test scale (§4.1) and at three (§4.2), on the validation images."""

    ckpt = out / "run" / "best.safetensors"
    protocols = ["center", "dense", "multicrop", "dense+multicrop"]
    eval_data, root = (val_dir, None) if val_dir else (_heldout_list(cfg, out), train_dir)
    single = evaluate(
        ckpt,
        eval_data,
        protocols,
        out=out / "eval-single",
        workers=workers,
        progress=progress,
        data_root=root,
    )
    multi = evaluate(
        ckpt,
        eval_data,
        protocols,
        multi_scale=True,
        out=out / "eval-multi",
        workers=workers,
        progress=progress,
        data_root=root,
    )
    if progress:
        print(format_table(single))
        print(format_table(multi))
    return single, multi


def run_demo(out=None, data=None, workers=None, progress=True, **overrides) -> dict:
    """The whole pipeline; `overrides` are settings of ``configs/demo.yaml`` (epochs, arch, ...)."""

    t_start = time.perf_counter()
    out, cfg, train_dir, val_dir, workers = _plan(out, data, workers, progress, overrides)
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
        data_desc = (
            f"built-in synthetic set: {SYNTH['classes']} classes, {SYNTH['per_class']} training and "
            f"{SYNTH['val_per_class']} validation images per class, {SYNTH['size']}x{SYNTH['size']} JPEG"
        )
    else:
        data_desc = f"{data}" + (
            " (train/ and val/)" if val_dir else f" ({cfg.val_fraction:.0%} held out for validation)"
        )
        say(f"[1/5] using {data_desc}")
    timings["data"] = time.perf_counter() - t

    # 2-3. statistics and training
    say(
        f"[2/5] colour statistics, then [3/5] training a narrow net {cfg.arch} "
        f"(width x{cfg.width}, crop {cfg.crop}, S in [{cfg.scale.lo}, {cfg.scale.hi}]) "
        f"for up to {cfg.epochs} epochs ..."
    )
    t = time.perf_counter()
    result = train(cfg)
    timings["train"] = time.perf_counter() - t
    if result["status"] != "done":
        raise VGGError(f"training stopped: {result.get('stop_reason')}")
    curves = plot_run(out / "run", out / "curves.png")

    # 4. evaluation: every protocol, single scale (§4.1) and three scales (§4.2)
    say("[4/5] evaluating with every protocol at one and three test scales ...")
    t = time.perf_counter()
    single, multi = _evaluate_all(cfg, out, train_dir, val_dir, workers, progress)
    timings["evaluate"] = time.perf_counter() - t

    # 5. report
    say("[5/5] writing the report ...")
    timings["total"] = time.perf_counter() - t_start
    report = _report(out, data_desc, cfg, result, single, multi, timings, curves)
    write_text(out / "report.md", report)
    return dict(
        out=str(out),
        report=str(out / "report.md"),
        train=result,
        single=single,
        multi=multi,
        timings=timings,
        classes=single["classes"],
    )


EPOCH_COLUMNS = columns(
    "epoch",
    ("lr", "lr", "{:.0e}"),
    ("train loss", "train_loss", "{:.3f}"),
    ("train top-1 err", "train_top1_err", "{:.1f}"),
    ("val top-1 err", "val_top1_err", "{:.1f}"),
    ("val top-5 err", "val_top5_err", "{:.1f}"),
)
EVAL_COLUMNS = columns(
    "protocol",
    "test Q",
    *error_columns(),
    ("images/s", "images_per_s", "{:.0f}"),
)


def _eval_rows(*results) -> list[dict]:
    return [
        dict(r, protocol=p, **{"test Q": ",".join(map(str, res["scales"]))})
        for res in results
        for p, r in res["protocols"].items()
    ]


def _report(out, data_desc, cfg, result, single, multi, timings, curves) -> str:
    hist = result["history"]
    chance = 100 * (1 - 1 / single["classes"])
    best = result["best"] or {}
    eval_cmd = (
        f"{command()} evaluate --checkpoint {out}/run/best.safetensors --data {single['data']} "
        + (f"--root {cfg.data} " if single["data"].endswith(".csv") else "")
        + "--protocol center dense multicrop dense+multicrop --multi-scale --out NEW_DIR"
    )
    hint = path_hint()
    lines = [
        "# vggnet demo report",
        "",
        f"Made {datetime.now():%Y-%m-%d %H:%M} on {platform.machine()} with {os.cpu_count()} cores "
        f"(total {timings['total']:.0f} s: data {timings['data']:.0f} s, training {timings['train']:.0f} s, "
        f"evaluation {timings['evaluate']:.0f} s). Every number below was measured in this run.",
        "",
        "## Data",
        "",
        f"- {data_desc}",
        f"- {single['images']} validation images, {single['classes']} classes "
        f"(chance top-1 error {chance:.1f}%)",
        "",
        "## Training (§3.1)",
        "",
        f"- net {cfg.arch}, widths x{cfg.width}, FC {cfg.fc_dim}, crop {cfg.crop}, "
        f"scale jittering S in {cfg.scale.paper()}, batch {cfg.batch_size}, SGD momentum {cfg.momentum}, "
        f"weight decay {cfg.weight_decay:g}, lr {cfg.lr} divided by 10 on plateau"
        + (
            ", batch norm, no dropout (narrow-net demo deviation, see `configs/demo.yaml`)"
            if cfg.batch_norm
            else ""
        ),
        f"- {len(hist)} epochs ({result.get('stop_reason', '')}); best validation centre-crop error "
        f"top-1 {best.get('top1_err', float('nan')):.1f}%, top-5 {best.get('top5_err', float('nan')):.1f}% "
        f"at epoch {best.get('epoch', '-')}; {hist[-1]['images_per_s']:.0f} training images/s",
        "",
        "![training curves](curves.png)",
        "",
        render(hist, EPOCH_COLUMNS, "markdown"),
        "## Evaluation (§3.2, §4)",
        "",
        render(_eval_rows(single, multi), EVAL_COLUMNS, "markdown"),
        "Reproduce the three-scale rows (`--scales` for others):",
        "",
        "```bash",
        eval_cmd,
        "```",
        "",
        *([f"({hint}.)", ""] if hint else []),
        "## Files",
        "",
        "- `run/`: config.yaml, stats.json, log.jsonl, best/final/last checkpoints",
        "- `eval-single/`, `eval-multi/`: results.json and per-image posteriors (for `vggnet fuse`)",
        "- `curves.png`: loss, error and learning-rate curves",
        "",
    ]
    return "\n".join(lines)


def summary_table(result: dict) -> str:
    single, multi = result["single"], result["multi"]
    best = result["train"]["best"] or {}
    head = (
        f"trained {len(result['train']['history'])} epochs in {result['timings']['train']:.0f} s; "
        f"chance top-1 error {100 * (1 - 1 / single['classes']):.0f}%"
    )
    cols = columns(
        "protocol",
        ("Q", "test Q"),
        *error_columns("err", fmt="{:.1f}%"),
    )
    return (
        render(_eval_rows(single, multi), cols, title=head)
        + f"\nbest validation centre crop during training: top-1 {best.get('top1_err', float('nan')):.1f}%"
    )
