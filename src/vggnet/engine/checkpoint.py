"""Training checkpoints that never lose work.

``last.safetensors`` holds everything a resumed run needs: the weights, the optimizer's momentum
buffers (as tensors), and in its JSON metadata the position (epoch, next step), the schedule, the
history and the resolved config. ``best.safetensors`` and ``final.safetensors`` hold weights and
metadata only. Every file is written atomically (temp file, fsync, rename): a crash while writing
leaves the previous file intact.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import VGGError
from ..models.weights import read_weights, save_weights

LAST, BEST, FINAL = "last.safetensors", "best.safetensors", "final.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[f"optim.{i}.momentum_buffer"] = buf
    return out


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict) -> None:
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        key = f"optim.{i}.momentum_buffer"
        if key in tensors:
            if tensors[key].shape != p.shape:
                raise VGGError(f"checkpoint optimizer state {key} has shape {tuple(tensors[key].shape)}, "
                               f"parameter has {tuple(p.shape)}")
            optimizer.state[p]["momentum_buffer"] = tensors[key].to(p.device, p.dtype).clone()


def save_training_state(run_dir, model, optimizer, meta: dict, state: dict) -> Path:
    return save_weights(Path(run_dir) / LAST, model, dict(meta, train_state=state),
                        extra_tensors=optimizer_tensors(optimizer))


def load_training_state(run_dir) -> tuple[dict, dict]:
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise VGGError(f"nothing to resume: {path} does not exist")
    tensors, meta = read_weights(path)
    if "train_state" not in meta:
        raise VGGError(f"{path} has no training state")
    return tensors, meta
