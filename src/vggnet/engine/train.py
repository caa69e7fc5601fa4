"""``vggnet train``: the paper's training procedure (§3.1) as one function returning a dict.

Mini-batch SGD with momentum on soft-max cross-entropy, weight decay on weights, dropout on fc6 and
fc7, the plateau learning-rate rule, initialisation from Gaussian/Glorot or a warm start, training
crops at a fixed or jittered scale S, synchronous data parallelism under torchrun (§3.3).

The loss of a micro-batch is its summed cross-entropy divided by the per-process batch B/W; DDP
averages gradients over the W processes, so every update is the gradient of the mean loss over
the whole global batch B, whatever W and the micro-batch size (gradient accumulation).
"""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import open_source, split_holdout
from ..data.loaders import TrainBatches, center_loader, train_loader
from ..data.stats import compute_stats, load_stats, preprocessing_from_stats, save_stats
from ..data.transforms import Normalizer, TrainTransform, parse_scale
from ..errors import VGGError
from ..eval.metrics import topk_wrong
from ..models import create_model, init_weights, load_model, warm_start
from . import distributed
from .checkpoint import BEST, FINAL, LAST, load_optimizer_tensors, load_training_state, save_training_state
from .config import RESUME_MAY_CHANGE, TrainConfig, save_config, to_dict, validate
from .schedule import PlateauSchedule

LOG = "log.jsonl"


def default_val_scale(scale, crop: int) -> int:
    """§4.1: Q = S for fixed S, Q = (Smin + Smax) / 2 for jittered S."""
    lo, hi = parse_scale(scale)
    return max(crop, (lo + hi) // 2)


def prepare_run_dir(cfg: TrainConfig, d) -> TrainConfig:
    run = Path(cfg.out)
    if cfg.resume:
        saved = run / "config.yaml"
        if not (run / LAST).is_file():
            raise VGGError(f"nothing to resume in {run}: no {LAST}")
        import yaml
        old = yaml.safe_load(saved.read_text()) if saved.is_file() else {}
        new = to_dict(cfg)
        diff = [k for k in new if k not in RESUME_MAY_CHANGE and k in old and old[k] != new[k]]
        if diff:
            raise VGGError("--resume with settings that differ from the run's config.yaml: "
                           + ", ".join(f"{k} ({old[k]!r} -> {new[k]!r})" for k in diff))
        return cfg
    if run.exists() and (not run.is_dir() or any(run.iterdir())):
        raise VGGError(f"run folder {run} is not empty; refusing to overwrite it (use --resume to continue "
                       f"that run, or choose a new --out)")
    return cfg


def param_groups(model, weight_decay: float, decay_biases: bool):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() > 1 or decay_biases else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


class StopFlag:
    """SIGTERM / SIGINT ask the loop to checkpoint and exit after the current step."""

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


@torch.no_grad()
def validate_center(model, normalizer, source, q, crop, d, batch_size=64, workers=0, amp=False,
                    channels_last=False) -> dict:
    """Top-1/top-5 error of centre crops at scale Q (§4.1), sharded over the ranks."""
    was_training = model.training
    model.eval()
    indices = list(range(d.rank, len(source), d.world_size))
    counts = torch.zeros(4, dtype=torch.float64)  # top1 wrong, top5 wrong, seen, unreadable
    for batch in center_loader(source, q, crop, batch_size, workers, indices):
        counts[3] += len(batch["bad"])
        if batch["images"] is None:
            continue
        x = normalizer(batch["images"].to(d.device, non_blocking=True), channels_last=channels_last)
        ctx = torch.autocast(d.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        with ctx:
            logits = model(x)
        wrong = topk_wrong(logits.float(), batch["labels"], (1, 5))
        counts += torch.tensor([wrong[1], wrong[5], len(batch["labels"]), 0], dtype=torch.float64)
    if d.enabled:
        c = counts.to(d.device)
        d.all_reduce_sum(c)
        counts = c.cpu()
    model.train(was_training)
    n = max(counts[2].item(), 1)
    return dict(val_top1_err=100 * counts[0].item() / n, val_top5_err=100 * counts[1].item() / n,
                val_images=int(counts[2].item()), val_unreadable=int(counts[3].item()))


def _resolve_device_flags(cfg, d):
    cuda = d.device.type == "cuda"
    amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)
    channels_last = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cuda)
    return amp, channels_last


def train(cfg: TrainConfig) -> dict:
    d = distributed.setup(cfg.device)
    try:
        result = _train(cfg, d)
        # Rank 0 is still writing the final weights when the others finish: tearing the group
        # down under it aborts gloo, so everyone leaves together.
        d.barrier()
        return result
    finally:
        distributed.teardown(d)


def _train(cfg: TrainConfig, d) -> dict:
    validate(cfg, d.world_size)
    cfg = prepare_run_dir(cfg, d)
    run = Path(cfg.out)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if d.device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    amp, channels_last = _resolve_device_flags(cfg, d)

    # -- data: every check before anything is written --
    source = open_source(cfg.data, cfg.data_root)
    if cfg.val_data:
        val = open_source(cfg.val_data, cfg.data_root, classes=source.classes)
        train_src = source
    else:
        train_src, val = split_holdout(source, cfg.val_fraction, cfg.seed)
    transform = TrainTransform(cfg.scale, cfg.crop)
    sampler = TrainBatches(len(train_src), cfg.batch_size, cfg.seed, d.rank, d.world_size)
    if d.is_main:
        run.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            save_config(run / "config.yaml", cfg)

    # Rank 0 alone decides where the statistics come from and every rank joins the broadcast:
    # a rank that looked for stats.json itself could find rank 0's fresh file and skip it.
    stats = None
    if d.is_main:
        if cfg.stats:
            stats = load_stats(cfg.stats)
        elif (run / "stats.json").is_file():
            stats = load_stats(run / "stats.json")
        else:
            stats = compute_stats(train_src, cfg.stats_max_images, cfg.seed, cfg.workers,
                                  progress=cfg.progress and sys.stderr.isatty())
            save_stats(run / "stats.json", stats)
    stats = d.broadcast_object(stats)
    preprocessing = preprocessing_from_stats(stats)
    loader = train_loader(train_src, transform, sampler, cfg.workers, pin_memory=d.device.type == "cuda")
    q = cfg.val_scale or default_val_scale(cfg.scale, cfg.crop)
    normalizer = Normalizer(preprocessing).to(d.device)

    # -- model and initialisation (§3.1) --
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.arch, len(source.classes), width=cfg.width, fc_dim=cfg.fc_dim, crop_size=cfg.crop,
                       dropout=cfg.dropout, batch_norm=cfg.batch_norm)
    init_weights(net, cfg.init, cfg.init_std)
    warm = None
    if cfg.init_from and not cfg.resume:
        src_model, src_meta = load_model(cfg.init_from)
        same = src_model.arch == net.arch or (
            {k: v for k, v in src_model.arch.items() if k != "dropout"} == {k: v for k, v in net.arch.items() if k != "dropout"})
        layers = "all" if cfg.init_layers == "all" or (cfg.init_layers == "auto" and same) else None
        warm = warm_start(net, src_model, layers)
    net.to(d.device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(param_groups(net, cfg.weight_decay, cfg.decay_biases), lr=cfg.lr,
                                momentum=cfg.momentum, **({"fused": True} if d.device.type == "cuda" else {}))
    schedule = PlateauSchedule(cfg.lr, cfg.lr_factor, cfg.lr_patience, cfg.lr_drops, cfg.min_delta)
    lo, hi = parse_scale(cfg.scale)
    meta = dict(classes=source.classes, preprocessing=preprocessing,
                train=dict(scale=[lo, hi], crop=cfg.crop, val_scale=q, recipe=cfg.recipe, config=to_dict(cfg),
                           warm_start=dict(source=cfg.init_from, layers=warm) if warm else None))
    state = dict(epoch=0, step=0, history=[], schedule=schedule.state_dict(), best_val=None, partial=None,
                 bad_images=0)
    if cfg.resume:
        tensors, saved = load_training_state(run)
        net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
        load_optimizer_tensors(optimizer, tensors)
        state = saved["train_state"]
        meta["train"]["warm_start"] = saved.get("train", {}).get("warm_start")
        schedule = PlateauSchedule.from_state(state["schedule"])
        for g in optimizer.param_groups:
            g["lr"] = schedule.lr
    model = net
    if d.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    writer = None
    if cfg.tensorboard and d.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise VGGError("--tensorboard needs the tensorboard package: pip install 'vggnet[tensorboard]'") from None
        writer = SummaryWriter(str(run / "tb"))

    local_batch = cfg.batch_size // d.world_size
    micro = cfg.micro_batch or local_batch
    steps_per_epoch = sampler.steps_per_epoch
    if cfg.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)

    def checkpoint(epoch, step, partial=None):
        state.update(epoch=epoch, step=step, schedule=schedule.state_dict(), partial=partial)
        if d.is_main:
            save_training_state(run, net, optimizer, meta, state)

    summary = dict(run_dir=str(run), status="running")
    last_ckpt_time = time.monotonic()
    stopped_by = None
    with StopFlag() as stop:
        epoch = state["epoch"]
        while epoch < cfg.epochs:
            start_step = state["step"] if state["epoch"] == epoch else 0
            sampler.set_epoch(epoch, start_step)
            model.train()
            acc = state.get("partial") or dict(loss=0.0, wrong1=0.0, seen=0, seconds=0.0, bad=[])
            loss_sum = torch.zeros((), dtype=torch.float64, device=d.device)
            wrong_sum = torch.zeros((), dtype=torch.float64, device=d.device)
            t0 = time.perf_counter()
            bar = None
            if cfg.progress and d.is_main and sys.stderr.isatty():
                from tqdm import tqdm
                bar = tqdm(total=steps_per_epoch * cfg.batch_size, initial=start_step * cfg.batch_size,
                           unit="img", unit_scale=True, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                           dynamic_ncols=True, mininterval=1.0)
            step = start_step
            for step, batch in enumerate(loader, start=start_step):
                if step >= steps_per_epoch:
                    break
                if batch["bad"]:
                    acc["bad"] = acc["bad"] + [f"{p}: {r}" for p, r in batch["bad"]]
                    if cfg.on_bad_image == "fail":
                        p, r = batch["bad"][0]
                        raise VGGError(f"unreadable training image {p}: {r} (--on-bad-image skip would skip it)")
                if batch["images"] is None:
                    raise VGGError(f"every image of a batch is unreadable (e.g. {batch['bad'][0][0]}); "
                                   f"run `vggnet data check {cfg.data}`")
                torch.manual_seed(_step_seed(cfg.seed, epoch, step, d.rank))  # dropout masks: resumable
                images, labels = batch["images"], batch["labels"].to(d.device, non_blocking=True)
                alpha = batch["alpha"] if cfg.colour_shift else None
                chunks = list(zip(images.split(micro), labels.split(micro),
                                  alpha.split(micro) if alpha is not None else [None] * math.ceil(len(labels) / micro)))
                for i, (xb, yb, ab) in enumerate(chunks):
                    sync = not d.enabled or i == len(chunks) - 1
                    ctx = contextlib.nullcontext() if sync else model.no_sync()
                    with ctx:
                        x = normalizer(xb, alpha=ab, channels_last=channels_last)
                        with (torch.autocast(d.device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()):
                            logits = model(x)
                        ce = F.cross_entropy(logits.float(), yb, reduction="sum")
                        (ce / local_batch).backward()
                    loss_sum += ce.detach()
                    wrong_sum += (logits.detach().argmax(1) != yb).sum()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                acc["seen"] += len(labels)
                done = step + 1
                if bar is not None:
                    bar.update(cfg.batch_size)
                # Host synchronisation only every few steps: the finiteness check and the bar.
                if done % 10 == 0 or done == steps_per_epoch:
                    lv = loss_sum.item()
                    if not math.isfinite(lv):
                        summary.update(status="diverged")
                        raise VGGError(f"loss is not finite at epoch {epoch + 1}, step {done}; stopping. The last "
                                       f"good checkpoint ({run / LAST}) is intact; try a lower --lr or --init glorot")
                    if bar is not None:
                        bar.set_postfix(loss=f"{(acc['loss'] + lv) / max(acc['seen'], 1):.3f}", lr=f"{schedule.lr:.0e}")
                flag = torch.tensor([1.0 if stop.raised else 0.0])
                if d.enabled and done % 10 == 0:
                    flag = d.all_reduce_sum(flag.to(d.device)).cpu()
                periodic = (cfg.checkpoint_steps and done % cfg.checkpoint_steps == 0) or \
                    (time.monotonic() - last_ckpt_time > 60 * cfg.checkpoint_minutes)
                if (flag.item() > 0 or periodic) and done < steps_per_epoch:
                    part = dict(acc, loss=acc["loss"] + loss_sum.item(), wrong1=acc["wrong1"] + wrong_sum.item(),
                                seconds=acc["seconds"] + time.perf_counter() - t0)
                    checkpoint(epoch, done, part)
                    last_ckpt_time = time.monotonic()
                    if flag.item() > 0:
                        stopped_by = stop.raised or "signal"
                        break
            if bar is not None:
                bar.close()
            if stopped_by:
                break
            seconds = acc["seconds"] + time.perf_counter() - t0
            acc["loss"] += loss_sum.item()
            acc["wrong1"] += wrong_sum.item()
            totals = torch.tensor([acc["loss"], acc["wrong1"], acc["seen"]], dtype=torch.float64, device=d.device)
            d.all_reduce_sum(totals)
            if not math.isfinite(totals[0].item()):
                raise VGGError(f"loss is not finite at the end of epoch {epoch + 1}; the last good checkpoint "
                               f"({run / LAST}) is intact")
            bad = acc["bad"]
            if d.enabled:
                gathered = [None] * d.world_size
                torch.distributed.all_gather_object(gathered, bad)
                bad = [b for part in gathered for b in part]
            v = validate_center(model if not cfg.compile else net, normalizer, val, q, cfg.crop, d,
                                batch_size=max(1, min(64, local_batch)), workers=cfg.workers, amp=amp,
                                channels_last=channels_last)
            lr_used = schedule.lr
            sched = schedule.step(v["val_top1_err"])
            for g in optimizer.param_groups:
                g["lr"] = schedule.lr
            n = max(totals[2].item(), 1)
            record = dict(epoch=epoch + 1, lr=lr_used, train_loss=totals[0].item() / n,
                          train_top1_err=100 * totals[1].item() / n, **v, val_scale=q,
                          images_per_s=totals[2].item() / max(seconds, 1e-9), epoch_seconds=seconds,
                          bad_images=len(bad), lr_dropped=sched["dropped"], time=time.time())
            state["history"].append(record)
            state["bad_images"] += len(bad)
            improved = sched["improved"]
            if improved:
                state["best_val"] = dict(epoch=epoch + 1, top1_err=v["val_top1_err"], top5_err=v["val_top5_err"])
            epoch += 1
            checkpoint(epoch, 0, None)
            last_ckpt_time = time.monotonic()
            if d.is_main:
                with open(run / LOG, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if bad:
                    with open(run / "bad_images.txt", "a") as f:
                        f.write("".join(f"epoch {epoch}: {b}\n" for b in bad))
                if improved:
                    from ..models.weights import save_weights
                    save_weights(run / BEST, net, dict(meta, val=state["best_val"]))
                if writer is not None:
                    for k in ("train_loss", "train_top1_err", "val_top1_err", "val_top5_err", "lr", "images_per_s"):
                        writer.add_scalar(k, record[k], epoch)
                # One line per epoch, in a terminal and in logs alike.
                print(f"epoch {epoch:>3}  lr {lr_used:.0e}  loss {record['train_loss']:.3f}  "
                      f"train top-1 {record['train_top1_err']:5.1f}%  val top-1 {v['val_top1_err']:5.1f}%  "
                      f"top-5 {v['val_top5_err']:5.1f}%  {record['images_per_s']:.0f} img/s"
                      + (f"  ({len(bad)} unreadable skipped)" if bad else "")
                      + ("  lr/10" if sched["dropped"] else ""), flush=True)
            if sched["stop"]:
                summary["stop_reason"] = f"validation error plateaued after {schedule.drops} learning-rate drops"
                break
        else:
            summary["stop_reason"] = f"epoch cap ({cfg.epochs}) reached"
    if writer is not None:
        writer.close()
    if stopped_by:
        summary.update(status="interrupted", stop_reason=f"{stopped_by}: checkpoint written, resume with --resume")
        return summary
    if d.is_main:
        from ..models.weights import save_weights
        save_weights(run / FINAL, net, dict(meta, val=state["history"][-1] if state["history"] else None))
        if not (run / BEST).exists():
            save_weights(run / BEST, net, meta)
    summary.update(status="done", epochs=state["epoch"], history=state["history"], best=state["best_val"],
                   final=str(run / FINAL), best_weights=str(run / BEST), bad_images=state["bad_images"])
    return summary
