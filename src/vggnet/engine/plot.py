"""``vggnet plot RUN_DIR``: training curves (loss, error, learning rate) from ``log.jsonl``."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import VGGError


def read_log(run_dir) -> list[dict]:
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise VGGError(f"no training log in {run_dir} (expected {path})")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
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
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, [r["train_loss"] for r in rows], "o-")
    ax[0].set(title="training loss", xlabel="epoch")
    ax[1].plot(ep, [r["train_top1_err"] for r in rows], "o-", label="train top-1 (augmented crops)")
    ax[1].plot(ep, [r["val_top1_err"] for r in rows], "o-", label=f"val top-1 (centre crop, Q={rows[-1]['val_scale']})")
    ax[1].plot(ep, [r["val_top5_err"] for r in rows], "o--", label="val top-5")
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
