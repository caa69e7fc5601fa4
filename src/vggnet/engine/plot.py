"""``vggnet plot RUN_DIR``: training curves (loss, the objective's errors, learning rate) from
``log.jsonl``, whatever the objective (every ``*_err`` figure of the log is drawn)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import VGGError


def read_log(run_dir) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise VGGError(f"no training log in {run_dir} (expected {path})")
    rows = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise VGGError(f"{path}:{n}: not a JSON record (the log is damaged)") from None
        if not isinstance(row, dict) or not all(k in row for k in ("epoch", "lr", "train_loss")):
            raise VGGError(f"{path}:{n}: not an epoch record of `vggnet train`")
        rows.append(row)
    if not rows:
        raise VGGError(f"{path} is empty: no epoch has finished yet")
    return rows


def plot_run(run_dir, out=None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_log(run_dir)
    out = Path(out) if out else Path(run_dir) / "curves.png"
    ep = [r["epoch"] for r in rows]
    errors = [k for k in rows[-1] if k.endswith("_err")]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [r["train_loss"] for r in rows], "o-")
    ax[0].set(title="training loss", xlabel="epoch")
    for key in errors:
        label = key.replace("_err", "").replace("_", " ")
        if key.startswith("val_") and "val_scale" in rows[-1]:
            label += f" (Q={rows[-1]['val_scale']})"
        ax[1].plot(ep, [r.get(key) for r in rows], "o-" if key.startswith("train") else "o--", label=label)
    ax[1].set(title="error (%)", xlabel="epoch")
    ax[1].legend(fontsize=7)
    ax[2].semilogy(ep, [r["lr"] for r in rows], "o-")
    ax[2].set(title="learning rate", xlabel="epoch")
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    from ..fileio import atomic_write
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out
