"""Training checkpoints that never lose work.

A run folder holds three weight files, each written atomically (temp file, fsync, rename: a crash
while writing leaves the previous file intact) and only ever with finite weights:

- ``last.safetensors``: everything a resumed run needs: the weights, the optimizer's momentum
  buffers (as tensors), and in its metadata the :class:`TrainState` (position, schedule, history);
- ``best.safetensors``: the weights of the epoch with the best validation figure;
- ``final.safetensors``: the weights when training ended.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import VGGError
from ..models.meta import WeightsMeta
from ..models.weights import read_weights, save_weights
from .schedule import PlateauSchedule

LAST, BEST, FINAL = "last.safetensors", "best.safetensors", "final.safetensors"


@dataclass
class TrainState:
    """Where a run stands: the next (epoch, step), the schedule, one record per finished epoch, the
    best validation result, and the running sums of an epoch interrupted by a checkpoint."""

    epoch: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    schedule: dict = field(default_factory=dict)
    best_val: dict | None = None
    partial: dict | None = None
    bad_images: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where="") -> "TrainState":
        """Read and check a checkpoint's state: a damaged or hand-edited one is refused here, by
        name, rather than failing somewhere in the loop (or training on with nonsense)."""

        def damaged(what):
            return VGGError(f"{where}: the training state is damaged ({what})")

        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(d, dict) or not _count(d.get("epoch")) or not _count(d.get("step")):
            raise damaged("no epoch/step")
        state = cls(**{k: v for k, v in d.items() if k in names})
        if not isinstance(state.history, list) or not all(isinstance(r, dict) for r in state.history):
            raise damaged("history is not a list of epoch records")
        if not _count(state.bad_images) or not (state.best_val is None or isinstance(state.best_val, dict)):
            raise damaged("bad_images / best_val")
        _check_schedule(state.schedule, damaged)
        if state.partial is not None:
            p = state.partial
            if not (
                isinstance(p, dict)
                and isinstance(p.get("sums"), list)
                and all(map(_number, p["sums"]))
                and _count(p.get("seen"))
                and _number(p.get("seconds"))
                and isinstance(p.get("bad"), list)
            ):
                raise damaged("the sums of the interrupted epoch")
        return state


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_schedule(schedule, damaged) -> None:
    """The plateau schedule's state (§3.1): the fields of PlateauSchedule, a positive finite rate."""

    fields = {f.name for f in dataclasses.fields(PlateauSchedule)}
    if not isinstance(schedule, dict) or not schedule or set(schedule) - fields or "lr" not in schedule:
        raise damaged("the learning-rate schedule")
    numbers = {k: v for k, v in schedule.items() if not (k == "best" and v is None)}
    if not all(_number(v) for v in numbers.values()) or not schedule["lr"] > 0:
        raise damaged(f"learning-rate schedule {schedule}")


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
                raise VGGError(
                    f"checkpoint optimizer state {key} has shape {tuple(tensors[key].shape)}, "
                    f"parameter has {tuple(p.shape)}"
                )
            optimizer.state[p]["momentum_buffer"] = tensors[key].to(p.device, p.dtype).clone()


def save_last(run_dir, model, optimizer, meta: WeightsMeta, state: TrainState) -> Path:
    """The resumable checkpoint. Momentum buffers are checked finite too: resuming from a file
    whose weights are fine but whose momentum is not would diverge at once."""
    extra = optimizer_tensors(optimizer)
    for key, value in extra.items():
        if not torch.isfinite(value).all():
            raise VGGError(f"refusing to write {Path(run_dir) / LAST}: optimizer state {key} is not finite")
    return save_weights(
        Path(run_dir) / LAST, model, meta.replace(train_state=state.to_dict()), extra_tensors=extra
    )


def save_best(run_dir, model, meta: WeightsMeta, val: dict | None) -> Path:
    return save_weights(Path(run_dir) / BEST, model, meta.replace(val=val))


def save_final(run_dir, model, meta: WeightsMeta, val: dict | None) -> Path:
    """The final weights; also the best ones when no epoch ever improved on validation."""
    path = save_weights(Path(run_dir) / FINAL, model, meta.replace(val=val))
    if not (Path(run_dir) / BEST).exists():
        save_weights(Path(run_dir) / BEST, model, meta)
    return path


def load_last(run_dir) -> tuple[dict, WeightsMeta, TrainState]:
    path = Path(run_dir) / LAST
    if not path.is_file():
        raise VGGError(f"nothing to resume: {path} does not exist")
    tensors, meta = read_weights(path)
    if meta.train_state is None:
        raise VGGError(f"{path} has no training state")
    for key, value in tensors.items():  # weights and momentum: resuming from NaN diverges at once
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise VGGError(f"{path}: tensor {key!r} is not finite; this checkpoint cannot be resumed")
    return tensors, meta, TrainState.from_dict(meta.train_state, str(path))
