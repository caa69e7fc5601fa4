"""Everything a training run is made of, built once from a :class:`TrainConfig` (§3.1).

``build_run`` reads the data sources, builds and initialises the net (Gaussian, Glorot or a warm
start), makes the optimizer and the plateau schedule, and restores a resumed run's state. Every
check that can fail (data, recipe, the checkpoint to warm-start from) happens before the first
file is written into the run folder; the colour statistics, the slowest step, come last.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from ..data.datasets import Source, open_source, split_holdout
from ..data.loaders import TrainBatches, train_loader
from ..data.stats import compute_stats, load_stats, save_stats
from ..data.transforms import Normalizer, TrainTransform, default_scales
from ..errors import VGGError
from ..models import VGG, create_model, init_weights, load_model, warm_start
from ..models.meta import Preprocessing, TrainInfo, WeightsMeta
from .checkpoint import LAST, TrainState, load_last, load_optimizer_tensors
from .config import RESUME_MAY_CHANGE, TrainConfig, save_config, to_dict
from .device import DevicePolicy, make_policy
from .distributed import Dist
from .schedule import PlateauSchedule


@dataclass
class Run:
    cfg: TrainConfig
    dist: Dist
    policy: DevicePolicy
    objective: object
    run_dir: Path
    train_source: Source
    val_source: Source
    val_scale: int  # Q of the per-epoch centre-crop validation (§4.1)
    sampler: TrainBatches
    loader: torch.utils.data.DataLoader
    normalizer: Normalizer
    net: VGG  # the model itself: what is saved
    model: torch.nn.Module  # what is called: `net`, wrapped for DDP / compiled
    optimizer: torch.optim.Optimizer
    schedule: PlateauSchedule
    meta: WeightsMeta
    state: TrainState

    @property
    def local_batch(self) -> int:
        return self.cfg.batch_size // self.dist.world_size

    @property
    def steps_per_epoch(self) -> int:
        cap = self.cfg.max_steps_per_epoch
        return min(self.sampler.steps_per_epoch, cap) if cap else self.sampler.steps_per_epoch


def check_run_dir(cfg: TrainConfig) -> None:
    """A new run needs an empty (or absent) folder; a resumed one its checkpoint and the same
    settings, except those that may change between sessions."""
    run = Path(cfg.out)
    if not cfg.resume:
        if run.exists() and (not run.is_dir() or any(run.iterdir())):
            raise VGGError(f"run folder {run} is not empty; refusing to overwrite it (use --resume to continue "
                           f"that run, or choose a new --out)")
        return
    if not (run / LAST).is_file():
        raise VGGError(f"nothing to resume in {run}: no {LAST}")
    saved = run / "config.yaml"
    old = yaml.safe_load(saved.read_text()) if saved.is_file() else {}
    new = to_dict(cfg)
    diff = [k for k in new if k not in RESUME_MAY_CHANGE and k in old and old[k] != new[k]]
    if diff:
        raise VGGError("--resume with settings that differ from the run's config.yaml: "
                       + ", ".join(f"{k} ({old[k]!r} -> {new[k]!r})" for k in diff))


def open_data(cfg: TrainConfig) -> tuple[Source, Source]:
    """The training and validation sources: ``val_data``, or a stratified hold-out of ``data``."""
    source = open_source(cfg.data, cfg.data_root)
    if cfg.val_data:
        return source, open_source(cfg.val_data, cfg.data_root, classes=source.classes)
    return split_holdout(source, cfg.val_fraction, cfg.seed)


def build_net(cfg: TrainConfig, num_classes: int, head: str) -> tuple[VGG, dict | None]:
    """The net of the recipe, initialised (§3.1): random (Gaussian / Glorot), then, with
    ``init_from``, a warm start: the paper's layers from a net A, or every layer from the same
    net trained at another scale (S=384 from S=256). Returns (net, what was warm-started)."""
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.arch, num_classes, width=cfg.width, fc_dim=cfg.fc_dim, crop_size=cfg.crop,
                       dropout=cfg.dropout, batch_norm=cfg.batch_norm, head=head)
    init_weights(net, cfg.init, cfg.init_std)
    if not cfg.init_from or cfg.resume:
        return net, None
    source, _ = load_model(cfg.init_from)
    same = source.spec.replace(dropout=0.0) == net.spec.replace(dropout=0.0)
    layers = "all" if cfg.init_layers == "all" or (cfg.init_layers == "auto" and same) else None
    return net, dict(source=cfg.init_from, layers=warm_start(net, source, layers))


def colour_stats(cfg: TrainConfig, dist: Dist, run_dir: Path, source: Source) -> dict:
    """Mean RGB and RGB eigen-pairs (§2.1, §3.1): given, cached in the run folder, or computed.
    Rank 0 alone decides where they come from and every rank joins the broadcast: a rank that
    looked for stats.json itself could find rank 0's fresh file and skip it."""
    stats = None
    if dist.is_main:
        if cfg.stats:
            stats = load_stats(cfg.stats)
        elif (run_dir / "stats.json").is_file():
            stats = load_stats(run_dir / "stats.json")
        else:
            stats = compute_stats(source, cfg.stats_max_images, cfg.seed, cfg.workers,
                                  progress=cfg.progress and sys.stderr.isatty())
            save_stats(run_dir / "stats.json", stats)
    return dist.broadcast_object(stats)


def param_groups(model, weight_decay: float, decay_biases: bool):
    """§3.1's weight decay; decision: on weights, not biases (as the released solvers did), unless asked."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() > 1 or decay_biases else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def make_optimizer(cfg: TrainConfig, net: VGG, policy: DevicePolicy) -> torch.optim.Optimizer:
    """§3.1: mini-batch SGD with momentum 0.9 (fused kernels on CUDA)."""
    return torch.optim.SGD(param_groups(net, cfg.weight_decay, cfg.decay_biases), lr=cfg.lr, momentum=cfg.momentum,
                           **({"fused": True} if policy.device.type == "cuda" else {}))


def restore(run: "Run") -> None:
    """Load a resumed run's weights, momentum, schedule and position from ``last``."""
    tensors, saved, state = load_last(run.run_dir)
    run.net.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optim.")})
    load_optimizer_tensors(run.optimizer, tensors)
    run.state = state
    run.meta = run.meta.replace(train=dataclasses.replace(run.meta.train,
                                                          warm_start=saved.train.warm_start if saved.train else None))
    run.schedule = PlateauSchedule.from_state(state.schedule)
    for g in run.optimizer.param_groups:
        g["lr"] = run.schedule.lr


def wrap(cfg: TrainConfig, dist: Dist, net: VGG) -> torch.nn.Module:
    """The module the loop calls: DDP for synchronous data parallelism (§3.3), compiled if asked."""
    model = net
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    return torch.compile(model) if cfg.compile else model


def build_run(cfg: TrainConfig, dist: Dist, objective) -> Run:
    check_run_dir(cfg)
    run_dir = Path(cfg.out)
    policy = make_policy(dist.device, cfg.amp, cfg.channels_last)
    train_source, val_source = open_data(cfg)
    sampler = TrainBatches(len(train_source), cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
    transform = TrainTransform(cfg.scale, cfg.crop)
    net, warm = build_net(cfg, len(train_source.classes), objective.head)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:
            save_config(run_dir / "config.yaml", cfg)
    preprocessing = Preprocessing.from_stats(colour_stats(cfg, dist, run_dir, train_source))
    loader = train_loader(train_source, transform, sampler, cfg.workers, pin_memory=policy.device.type == "cuda",
                          targets=objective.train_targets(train_source))
    val_scale = cfg.val_scale or default_scales(cfg.scale, cfg.crop)[0]
    policy.prepare(net)
    optimizer = make_optimizer(cfg, net, policy)
    schedule = PlateauSchedule(cfg.lr, cfg.lr_factor, cfg.lr_patience, cfg.lr_drops, cfg.min_delta)
    info = TrainInfo(tuple(cfg.scale), cfg.crop, val_scale, cfg.recipe, to_dict(cfg), warm, objective.name)
    meta = WeightsMeta(net.spec, list(train_source.classes), preprocessing, info)
    run = Run(cfg, dist, policy, objective, run_dir, train_source, val_source, val_scale, sampler, loader,
              Normalizer(preprocessing).to(policy.device), net, net, optimizer, schedule, meta, TrainState())
    if cfg.resume:
        restore(run)
    run.model = wrap(cfg, dist, net)
    return run
