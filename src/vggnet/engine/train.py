"""``vggnet train``: the paper's training procedure (§3.1) as small functions returning dicts;
:func:`train` only wires them: config -> run -> epochs -> steps.

Mini-batch SGD with momentum, weight decay on weights, dropout on fc6 and fc7, the plateau
learning-rate rule, training crops at a fixed or jittered scale S, synchronous data parallelism
under torchrun (§3.3). The objective (soft-max cross-entropy for classification; Appendix A's L2
box regression) is a plug-in: see ``engine/objectives.py``.

Each update is the gradient of the mean loss over the readable images of the global batch: a
process divides its summed loss by N/W (N readable images in the global batch, W processes) and
DDP averages the W gradients, whatever W and the micro-batch size (gradient accumulation), and
an unreadable image is left out rather than counted as a zero.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from ..data.loaders import center_loader
from ..errors import VGGError
from ..models.weights import read_meta
from ..progress import bar as progress_bar
from ..runtime.forward import forward
from . import distributed
from .checkpoint import LAST, save_best, save_final, save_last
from .config import TrainConfig
from .config import validate as validate_config
from .objectives import objective_for
from .run import Run, build_run, release_lock, train_mode
from .runlog import RunLog
from .schedule import warmup_factor

SYNC_EVERY = 10  # steps between host synchronisations (finiteness check, progress, stop flag)


class StopFlag:
    """SIGTERM / SIGINT ask the loop to checkpoint and exit at the next agreed step."""

    def __init__(self):
        self.raised = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, step, rank, 0xD80]).generate_state(1)[0])


def micro_batches(batch: dict, size: int, device) -> list[dict]:
    """The batch's tensors split into chunks of `size` along the batch dimension; targets moved to
    the device (images and colour-shift alphas go through the normaliser, which moves them)."""
    n = len(batch["labels"])
    fields = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor) and v.dim() >= 1 and len(v) == n}
    for k, v in fields.items():
        if k not in ("images", "alpha"):
            fields[k] = v.to(device, non_blocking=True)
    return [{k: v[i : i + size] for k, v in fields.items()} for i in range(0, n, size)]


def readable_share(run: Run, n_local: int):
    """N/W: this process's share of the readable images of the global batch (see module doc)."""
    if not run.dist.enabled:
        return n_local
    n = torch.tensor([float(n_local)], device=run.dist.device)
    run.dist.all_reduce_sum(n)  # no host synchronisation: the division stays on the device
    return n / run.dist.world_size


def train_step(run: Run, batch: dict, epoch: int, step: int, sums: torch.Tensor) -> int:
    """One SGD update on this process's share of one global batch. Adds the summed loss and the
    objective's counts to `sums`; returns the number of images used."""
    cfg, d = run.cfg, run.dist
    torch.manual_seed(_step_seed(cfg.seed, epoch, step, d.rank))  # dropout masks: resumable
    share = readable_share(run, len(batch["labels"]))
    chunks = micro_batches(batch, cfg.micro_batch or run.local_batch, run.policy.device)
    for i, chunk in enumerate(chunks):
        sync = not d.enabled or i == len(chunks) - 1
        with contextlib.nullcontext() if sync else run.model.no_sync():
            x = run.normalizer(
                chunk["images"],
                alpha=chunk.get("alpha") if cfg.colour_shift else None,
                channels_last=run.policy.channels_last,
            )
            with run.policy.autocast():
                outputs = run.model(x)
            loss = run.objective.loss(outputs, chunk)
            (loss / share).backward()
        sums[0] += loss.detach()
        sums[1:] += run.objective.train_counts(outputs, chunk)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return len(batch["labels"])


def warm_up(run: Run, epoch: int, step: int) -> None:
    """The rate of this step under ``--lr-warmup`` (engine/schedule.py): set only on the ramp's
    steps; after them the schedule's rate stands as end_epoch and resume set it."""
    steps, warmup = run.steps_per_epoch, run.cfg.lr_warmup
    if epoch * steps + step < warmup * steps:
        lr = run.schedule.lr * warmup_factor(warmup, epoch, step, steps)
        for g in run.optimizer.param_groups:
            g["lr"] = lr


def check_batch(run: Run, batch: dict) -> list[str]:
    """The batch's unreadable files, as "path: reason"; refused with --on-bad-image fail."""
    bad = [f"{p}: {r}" for p, r in batch["bad"]]
    if bad and run.cfg.on_bad_image == "fail":
        p, r = batch["bad"][0]
        raise VGGError(f"unreadable training image {p}: {r} (--on-bad-image skip would skip it)")
    if batch["images"] is None:
        raise VGGError(
            f"every image of a batch is unreadable (e.g. {batch['bad'][0][0]}); "
            f"run `vggnet data check {run.cfg.data}`"
        )
    return bad


def _agree(
    run: Run, stop: StopFlag, done: int, last_checkpoint: float, end: bool = False
) -> tuple[bool, bool]:
    """(checkpoint now?, stop now?), the same answer on every process: under DDP the local flags
    are combined only every SYNC_EVERY steps and at the end of an epoch (`end`: an epoch shorter
    than SYNC_EVERY steps still stops), so no process leaves the loop while another waits in a
    collective."""
    cfg = run.cfg
    timed = time.monotonic() - last_checkpoint > 60 * cfg.checkpoint_minutes
    stopping = stop.raised is not None
    if run.dist.enabled:
        if done % SYNC_EVERY and not end:
            timed = stopping = False
        else:
            flags = run.dist.all_reduce_sum(
                torch.tensor([float(timed), float(stopping)], device=run.dist.device)
            )
            timed, stopping = bool(flags[0] > 0), bool(flags[1] > 0)
    periodic = bool(cfg.checkpoint_steps and done % cfg.checkpoint_steps == 0) or timed
    return periodic or stopping, stopping


def _carried(run: Run, epoch: int) -> dict:
    """The sums of an epoch that a mid-epoch checkpoint interrupted (global figures, kept by
    rank 0 alone so that the end-of-epoch reduction counts them once)."""
    state = run.state
    fresh = dict(sums=[0.0] * (1 + len(run.objective.train_fields)), seen=0, seconds=0.0, bad=[])
    if state.epoch != epoch or not state.partial or not run.dist.is_main:
        return fresh
    return dict(fresh, **state.partial)


def _reduce(run: Run, carried: dict, sums: torch.Tensor, seen: int) -> list[float]:
    values = [c + s for c, s in zip(carried["sums"], sums.tolist())] + [carried["seen"] + seen]
    totals = torch.tensor(values, dtype=torch.float64, device=run.dist.device)
    return run.dist.all_reduce_sum(totals).tolist()


def _gather_bad(run: Run, bad: list[str]) -> list[str]:
    if not run.dist.enabled:
        return bad
    parts = [None] * run.dist.world_size
    torch.distributed.all_gather_object(parts, bad)
    return [b for part in parts for b in part]


def _diverged(run: Run, what: str, epoch: int, step: int) -> VGGError:
    """The one message of a diverged run, true about what the last checkpoint holds (no checkpoint
    is ever written with weights that are not finite)."""
    state = run.state
    where = (
        f"after epoch {state.epoch}"
        if state.step == 0
        else f"after step {state.step} of epoch {state.epoch + 1}"
    )
    kept = (
        f"{run.run_dir / LAST} still holds the run as it was {where}"
        if (run.run_dir / LAST).is_file()
        else "no checkpoint had been written yet"
    )
    hint = "try a lower --lr" + (", or --init glorot" if run.cfg.init != "glorot" else "")
    return VGGError(
        f"the run diverged: {what} not finite at epoch {epoch + 1}, step {step}; stopping without "
        f"writing a checkpoint ({kept}); {hint}"
    )


def _check_finite(run: Run, value: float, epoch: int, step: int) -> None:
    if not math.isfinite(value):
        raise _diverged(run, "the loss is", epoch, step)


def _check_weights(run: Run, epoch: int, step: int) -> None:
    if not all(torch.isfinite(p).all() for p in run.net.parameters()):
        raise _diverged(run, "the weights are", epoch, step)


def train_one_epoch(run: Run, epoch: int, stop: StopFlag) -> dict:
    """Steps through one epoch (from where a resumed run stopped). Returns the epoch's training
    figures, or ``stopped`` with the signal's name when asked to stop (after a checkpoint; asked at
    the last step, the checkpoint is the finished steps, their validation left to the resumed run:
    a preempted run stops within its grace period, however long a validation takes)."""
    start = run.state.step if run.state.epoch == epoch else 0
    run.sampler.set_epoch(epoch, start)
    train_mode(run)
    carried, steps, batch_size = _carried(run, epoch), run.steps_per_epoch, run.cfg.batch_size
    sums = torch.zeros(1 + len(run.objective.train_fields), dtype=torch.float64, device=run.policy.device)
    seen, bad, t0, last_checkpoint = 0, [], time.perf_counter(), time.monotonic()
    bar = progress_bar(
        steps * batch_size,
        start * batch_size,
        f"epoch {epoch + 1}/{run.cfg.epochs}",
        run.cfg.progress and run.dist.is_main,
    )
    for step, batch in enumerate(run.loader, start=start):
        if step >= steps:
            break
        bad += check_batch(run, batch)
        warm_up(run, epoch, step)
        seen += train_step(run, batch, epoch, step, sums)
        done = step + 1
        if done % SYNC_EVERY == 0 or done == steps:
            _check_finite(run, sums[0].item(), epoch, done)
            if bar is not None:
                bar.update((done - bar.n // batch_size) * batch_size)
                bar.set_postfix(lr=f"{run.schedule.lr:.0e}")
        save, stopping = _agree(run, stop, done, last_checkpoint, end=done == steps)
        if save and (done < steps or stopping):
            totals = _reduce(run, carried, sums, seen)
            part = dict(
                sums=totals[:-1],
                seen=int(totals[-1]),
                bad=carried["bad"] + _gather_bad(run, bad),
                seconds=carried["seconds"] + time.perf_counter() - t0,
            )
            checkpoint(run, epoch, done, part)
            last_checkpoint = time.monotonic()
            if stopping:
                if bar is not None:
                    bar.close()
                return dict(stopped=stop.raised or "signal")
    if bar is not None:
        bar.close()
    totals = _reduce(run, carried, sums, seen)
    _check_finite(run, totals[0], epoch, steps)
    n, seconds = totals[-1], carried["seconds"] + time.perf_counter() - t0
    counts = dict(zip(run.objective.train_fields, totals[1:-1]))
    return dict(
        train_loss=totals[0] / max(n, 1),
        **run.objective.summary(counts, n, "train"),
        images=int(n),
        images_per_s=n / max(seconds, 1e-9),
        epoch_seconds=seconds,
        bad=carried["bad"] + _gather_bad(run, bad),
    )


@torch.no_grad()
def validate(run: Run) -> dict:
    """The objective's validation figures on the centre crops at Q (§4.1), the images sharded
    over the processes: the evaluation's centre-crop path, with the objective's targets."""
    was_training = run.net.training
    run.net.eval()
    module = run.net if run.cfg.compile else run.model
    d, objective = run.dist, run.objective
    indices = list(range(d.rank, len(run.val_source), d.world_size))
    counts = torch.zeros(len(objective.val_fields) + 2, dtype=torch.float64)  # ..., seen, unreadable
    loader = center_loader(
        run.val_source,
        run.val_scale,
        run.cfg.crop,
        max(1, min(64, run.local_batch)),
        run.cfg.workers,
        indices,
        objective.val_targets(run.val_source, run.cfg.crop),
    )
    for batch in loader:
        counts[-1] += len(batch["bad"])
        if batch["images"] is None:
            continue
        outputs = forward(module, run.normalizer, run.policy, batch["images"])
        chunk = micro_batches(batch, len(batch["labels"]), run.policy.device)[0]
        counts[:-2] += objective.val_counts(outputs, chunk).cpu()
        counts[-2] += len(batch["labels"])
    if d.enabled:
        counts = d.all_reduce_sum(counts.to(d.device)).cpu()
    if was_training:
        train_mode(run)
    n = counts[-2].item()
    if n == 0:  # no image scored: an error of 0 of 0 would read as a perfect epoch
        raise VGGError(
            f"none of the {len(run.val_source)} validation images could be read at Q={run.val_scale} "
            f"(run `vggnet data check {run.cfg.val_data or run.cfg.data}`)"
        )
    figures = objective.summary(dict(zip(objective.val_fields, counts[:-2].tolist())), n, "val")
    return dict(figures, val_images=int(n), val_unreadable=int(counts[-1].item()))


def checkpoint(run: Run, epoch: int, step: int, partial: dict | None) -> None:
    """Record the position (the next step to run) and write ``last`` (rank 0). Weights that are
    not finite are never written: the previous checkpoint stays as it was."""
    _check_weights(run, epoch if step else epoch - 1, step or run.steps_per_epoch)
    state = run.state
    state.epoch, state.step, state.partial = epoch, step, partial
    state.schedule = run.schedule.state_dict()
    if run.dist.is_main:
        save_last(run.run_dir, run.net, run.optimizer, run.meta, state)


def end_epoch(run: Run, epoch: int, figures: dict, log: RunLog) -> dict:
    """Validation, the plateau rule (§3.1), the checkpoints and the log of one finished epoch."""
    _check_weights(run, epoch, run.steps_per_epoch)  # before validation: NaN weights score as nonsense
    v = validate(run)
    lr_used = run.schedule.lr
    sched = run.schedule.step(v[run.objective.monitor])
    for g in run.optimizer.param_groups:
        g["lr"] = run.schedule.lr
    bad = figures.pop("bad")
    record = dict(
        epoch=epoch + 1,
        lr=lr_used,
        **{k: figures[k] for k in figures if k != "images"},
        **v,
        val_scale=run.val_scale,
        bad_images=len(bad),
        lr_dropped=sched["dropped"],
        time=time.time(),
        precision=run.policy.precision,
    )
    state = run.state
    state.history.append(record)
    state.bad_images += len(bad)
    if sched["improved"]:
        state.best_val = dict(epoch=epoch + 1, **{k[len("val_") :]: v[k] for k in v if k.endswith("_err")})
        if run.dist.is_main:
            save_best(run.run_dir, run.net, run.meta, state.best_val)
    checkpoint(run, epoch + 1, 0, None)
    log.epoch(record, bad)
    return sched


def run_epochs(run: Run, log: RunLog) -> dict:
    """Epochs until the plateau rule stops training, the epoch cap, or a signal."""
    if run.schedule.ended:  # a finished run resumed (a restart, a requeue): nothing to train
        return _plateaued(run)
    with StopFlag() as stop:
        for epoch in range(run.state.epoch, run.cfg.epochs):
            figures = train_one_epoch(run, epoch, stop)
            if "stopped" in figures:
                return dict(
                    status="interrupted",
                    stop_reason=f"{figures['stopped']}: checkpoint written, resume with --resume",
                )
            if end_epoch(run, epoch, figures, log)["stop"]:
                return _plateaued(run)
    return dict(status="done", stop_reason=f"epoch cap ({run.cfg.epochs}) reached")


def describe_run(run: Run) -> str:
    """The line a run starts with, before its first epoch: what is trained, on what, where."""
    cfg, net, policy = run.cfg, run.net, run.policy
    params = sum(p.numel() for p in net.parameters())
    state = run.state
    start = (
        "training"
        if not (state.epoch or state.step)
        else f"resuming at epoch {state.epoch + 1}" + (f", step {state.step}" if state.step else "")
    )
    return (
        f"{start}: net {net.arch} (width x{cfg.width:g}, FC {cfg.fc_dim}, crop {cfg.crop}, "
        f"{params:,} parameters) on {len(run.train_source):,} images of "
        f"{len(run.train_source.classes)} classes, validating on {len(run.val_source):,} images"
        f"{'' if cfg.val_data else ' held out of --data'}; "
        f"S {cfg.scale.paper()}, batch {cfg.batch_size}, "
        f"{run.steps_per_epoch} steps per epoch; device {policy.device}"
        + (f" x {run.dist.world_size} processes" if run.dist.enabled else "")
        + f", precision {policy.precision}"
        + (", channels_last" if policy.channels_last else "")
        + (f" ({policy.reason})" if policy.reason else "")
    )


def _plateaued(run: Run) -> dict:
    drops = run.schedule.drops
    return dict(status="done", stop_reason=f"validation error plateaued after {drops} learning-rate drops")


def train(cfg: TrainConfig, objective=None) -> dict:
    """Train a net as `cfg` says; returns a summary dict (status, epochs, history, best, files)."""
    validate_config(cfg, distributed.world_size())
    d = distributed.setup(cfg.device, cfg.collective_timeout)
    try:
        run = build_run(cfg, d, objective or objective_for(cfg))
        log = RunLog(run.run_dir, run.objective, d.is_main, cfg.tensorboard)
        if cfg.resume:
            log.resume(run.state.history)
        if d.is_main:
            print(describe_run(run), flush=True)
        try:
            summary = run_epochs(run, log)
            if summary["status"] == "done" and d.is_main:
                last = run.state.history[-1] if run.state.history else None
                save_final(run.run_dir, run.net, run.meta, last)
        finally:
            log.close()
            release_lock(run)  # a run that ends leaves no run.lock
        # Rank 0 is still writing when the others finish: tearing the group down under it aborts
        # gloo, so everyone leaves together.
        d.barrier()
        return dict(
            summary,
            run_dir=str(run.run_dir),
            epochs=run.state.epoch,
            history=run.state.history,
            best=run.state.best_val,
            final=str(run.run_dir / "final.safetensors"),
            best_weights=str(run.run_dir / "best.safetensors"),
            bad_images=run.state.bad_images,
        )
    except Exception as e:
        if distributed.peer_failure(d, e):
            raise _lost(d, cfg) from None
        raise
    finally:
        distributed.teardown(d)


def _lost(d, cfg: TrainConfig) -> VGGError:
    """The one line of a process whose group lost a process (killed, stopped by its own error, or
    not answering within the collective timeout): who is gone, and what the run folder keeps."""
    missing = distributed.lost_ranks(d)
    if missing is None:
        who = "the other processes and the rendezvous store ({}:{}) are gone".format(
            *distributed.store_address()
        )
    elif missing:
        ranks = ", ".join(map(str, missing))
        who = f"rank{'s' * (len(missing) > 1)} {ranks} of {d.world_size} stopped answering"
    else:
        who = f"a collective failed although all {d.world_size} processes answer (a network fault?)"
    return VGGError(
        f"{who} (killed, failed, or silent for the {cfg.collective_timeout:g}-minute collective "
        f"timeout); rank {d.rank} stops too; {_kept(Path(cfg.out))}; run the same command with "
        f"--resume auto"
    )


def _kept(run_dir: Path) -> str:
    """What the run folder's last checkpoint holds, as read from the file itself."""
    path = run_dir / LAST
    if not path.is_file():
        return f"no checkpoint in {run_dir} yet"
    try:
        state = read_meta(path).train_state or {}
        where = (
            f"epoch {state['epoch']}"
            if state["step"] == 0
            else f"step {state['step']} of epoch {state['epoch'] + 1}"
        )
    except (VGGError, KeyError, TypeError):
        return f"{path} is unreadable"
    return f"{path} holds the run as it was after {where}"
