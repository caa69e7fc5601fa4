"""``vggnet plot RUN_DIR``: training curves (loss, the objective's errors, learning rate) from
``log.jsonl``, whatever the objective (every ``*_err`` figure of the log is drawn)."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import VGGError
from ..fileio import atomic_write, loads_json

MAX_LOG_BYTES = 200_000_000  # one short line per epoch: far more than any run writes


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_log(run_dir) -> list[dict]:
    """The epoch records of a run's ``log.jsonl``, each checked: what is drawn is a finite number
    (a damaged or hand-edited log is refused, by line, rather than drawn as nonsense)."""
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise VGGError(f"no training log in {run_dir} (expected {path})")
    if path.stat().st_size > MAX_LOG_BYTES:
        raise VGGError(
            f"{path}: {path.stat().st_size:,} bytes, more than a training log holds "
            f"(at most {MAX_LOG_BYTES:,})"
        )
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = loads_json(line)
        except ValueError:
            raise VGGError(f"{path}:{n}: not a JSON record (the log is damaged)") from None
        if not isinstance(row, dict) or not all(k in row for k in ("epoch", "lr", "train_loss")):
            raise VGGError(f"{path}:{n}: not an epoch record of `vggnet train`")
        drawn = ["epoch", "lr", "train_loss"] + [k for k in row if k.endswith("_err")]
        wrong = [k for k in drawn if not _number(row[k])] + (
            ["lr"] if _number(row["lr"]) and row["lr"] <= 0 else []
        )
        if wrong:
            raise VGGError(
                f"{path}:{n}: {wrong[0]} is {row[wrong[0]]!r}, not a "
                f"finite{' positive' * (wrong[0] == 'lr')} "
                f"number (the log is damaged)"
            )
        rows.append(row)
    if not rows:
        raise VGGError(f"{path} is empty: no epoch has finished yet")
    return rows


def plot_run(run_dir, out=None) -> Path:
    out = Path(out) if out else Path(run_dir) / "curves.png"
    fig = draw(read_log(run_dir))
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    return out


def draw(rows: list[dict]) -> Figure:
    """The figure of a run's epoch records: loss, errors and learning rate against whole epochs.
    A matplotlib Figure without pyplot: no global figure state, no GUI backend."""
    ep = [r["epoch"] for r in rows]
    errors = [k for k in rows[-1] if k.endswith("_err")]
    fig = Figure(figsize=(13, 3.6))
    ax = fig.subplots(1, 3)
    ax[0].plot(ep, [r["train_loss"] for r in rows], "o-")
    ax[0].set(title="training loss", xlabel="epoch")
    for key in errors:
        label = key.replace("_err", "").replace("_", " ")
        if key.startswith("val_") and "val_scale" in rows[-1]:
            label += f" (Q={rows[-1]['val_scale']})"
        ax[1].plot(ep, [r.get(key) for r in rows], "o-" if key.startswith("train") else "o--", label=label)
    ax[1].set(title="error (%)", xlabel="epoch")
    if errors:
        ax[1].legend(fontsize=7)
    ax[2].semilogy(ep, [r["lr"] for r in rows], "o-")
    ax[2].set(title="learning rate", xlabel="epoch")
    for a in ax:
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.5 on a short run
    fig.tight_layout()
    return fig
