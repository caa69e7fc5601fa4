"""Everything a training run is made of, built once from a :class:`TrainConfig` (§3.1).

``build_run`` reads the data sources, builds and initialises the net (Gaussian, Glorot or a warm
start), makes the optimizer and the plateau schedule, and restores a resumed run's state. Every
check that can fail (data, recipe, the checkpoint to warm-start from) happens before the first
file is written into the run folder; the colour statistics, the slowest step, come last.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.datasets import open_source, single_label, split_holdout
from ..data.loaders import TrainBatches, train_loader
from ..data.preprocessing import Preprocessing
from ..data.source import Source
from ..data.stats import compute_stats, load_stats, save_stats
from ..data.transforms import Normalizer, TrainTransform, default_scales
from ..errors import VGGError
from ..models import VGG, create_model, init_weights, load_model, warm_start
from ..models.meta import TrainInfo, WeightsMeta
from ..models.weights import check_state_dict, read_meta
from ..runtime.device import DevicePolicy, configure_backends, make_policy
from .checkpoint import LAST, TrainState, load_last, load_optimizer_tensors
from .config import (
    RESUME_MAY_CHANGE,
    TrainConfig,
    parse_milestones,
    read_recipe,
    same_setting,
    save_config,
    to_dict,
)
from .distributed import Dist
from .schedule import PlateauSchedule

LOCK = "run.lock"


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
    lock: object = None  # the open lock file of the run folder (rank 0)

    @property
    def local_batch(self) -> int:
        return self.cfg.batch_size // self.dist.world_size

    @property
    def steps_per_epoch(self) -> int:
        cap = self.cfg.max_steps_per_epoch
        return min(self.sampler.steps_per_epoch, cap) if cap else self.sampler.steps_per_epoch


# What a run writes before its first checkpoint: a folder holding only these (a run killed early,
# or refused after its config was written) can be started again, or resumed from zero.
BEFORE_CHECKPOINT = {"config.yaml", "stats.json", LOCK}


def _leftovers_only(run: Path) -> bool:
    return all(
        p.name in BEFORE_CHECKPOINT or (p.name.startswith(".") and p.name.endswith(".tmp"))
        for p in run.iterdir()
    )


def saved_config(run: Path) -> dict:
    """The settings a run was started with: its config.yaml, or, when that is gone, the copy in
    its checkpoint (a resume is always compared with something)."""
    path = run / "config.yaml"
    if not path.is_file():
        if (run / LAST).is_file():
            train = read_meta(run / LAST).train
            return dict(train.config) if train else {}
        return {}
    try:
        return read_recipe(path)  # the same checks as a recipe: bounded, UTF-8, a flat mapping
    except VGGError as e:
        raise VGGError(f"the run's config.yaml is damaged ({e}); restore it or start a new run") from None


def _differences(cfg: TrainConfig, run: Path) -> list[str]:
    """The settings that differ from the run's, except those that may change between sessions."""
    old, new = saved_config(run), to_dict(cfg)
    return [
        f"{k} ({old[k]!r} -> {new[k]!r})"
        for k in new
        if k not in RESUME_MAY_CHANGE and k in old and not same_setting(k, old[k], new[k])
    ]


def resume_auto(cfg: TrainConfig, run: Path) -> bool:
    """``--resume auto``, for a command that is re-run as it was (torchrun --max-restarts, a
    requeued job): continue when the folder holds this run (its config.yaml or checkpoint, with
    the same settings), start when it is new or empty; another run's folder is refused."""
    if not run.exists() or not any(run.iterdir()):
        return False
    if not (run / "config.yaml").is_file() and not (run / LAST).is_file():
        if _leftovers_only(run):
            return False
        raise VGGError(
            f"--resume auto: run folder {run} holds no run (no config.yaml, no {LAST}) but is not "
            f"empty; refusing to write into it (choose a new --out)"
        )
    diff = _differences(cfg, run)
    if diff:
        raise VGGError(
            f"--resume auto: run folder {run} holds another run, with other settings: "
            + ", ".join(diff)
            + " (choose a new --out, or give that run's settings)"
        )
    return True


def check_run_dir(cfg: TrainConfig) -> None:
    """A new run needs an empty folder (or one left by a run stopped before its first checkpoint);
    a resumed one the same settings as before, except those that may change between sessions.
    ``--resume auto`` is decided here, into True or False."""
    run = Path(cfg.out)
    if run.exists() and not run.is_dir():
        raise VGGError(f"run folder {run} is a file; give a folder for --out")
    if cfg.resume == "auto":
        cfg.resume = resume_auto(cfg, run)
    if not cfg.resume:
        if run.exists() and not _leftovers_only(run):
            raise VGGError(
                f"run folder {run} is not empty; refusing to overwrite it (use --resume to continue "
                f"that run, or choose a new --out)"
            )
        return
    if not (run / "config.yaml").is_file() and not (run / LAST).is_file():
        raise VGGError(f"nothing to resume in {run}: no {LAST} and no config.yaml")
    diff = _differences(cfg, run)
    if diff:
        raise VGGError("--resume with settings that differ from the run's config.yaml: " + ", ".join(diff))


def lock_run_dir(run: Path):
    """An exclusive lock on the run folder for this process's lifetime (released by the system
    even when the process is killed): two runs never write into one folder."""

    handle = open(run / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise VGGError(
            f"another vggnet train (pid {holder}) is writing into {run}; wait for it or stop it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def release_lock(run: "Run") -> None:
    """Close the run folder's lock and delete its file, while still held (so no other run's lock is
    ever deleted): a run that ends -- finished, stopped at a checkpoint, or refused -- leaves the
    folder without it; only a killed process leaves its file, which locks nothing."""
    if run.lock is None:
        return
    (run.run_dir / LOCK).unlink(missing_ok=True)
    run.lock.close()


def open_data(cfg: TrainConfig) -> tuple[Source, Source]:
    """The training and validation sources: ``val_data``, or a stratified hold-out of ``data``."""
    source = single_label(open_source(cfg.data, cfg.data_root), cfg.data)
    if cfg.val_data:
        return source, open_source(cfg.val_data, cfg.data_root, classes=source.classes)
    return split_holdout(source, cfg.val_fraction, cfg.seed)


def warm_layers(choice: str, source: VGG, target: VGG):
    """Which layers a warm start copies: ``paper`` (§3.1: A's first four convs and three FC layers),
    ``all`` (the same net at another scale, S=384 from S=256), ``all-but-head`` (a new head: another
    class count, or a box regressor, App. A); ``auto`` picks from the two nets' shapes."""
    if choice != "auto":
        return {"paper": None}.get(choice, choice)
    if source.spec.replace(dropout=0.0) == target.spec.replace(dropout=0.0):
        return "all"
    if source.spec.replace(dropout=0.0, num_classes=1, head="classifier") == target.spec.replace(
        dropout=0.0, num_classes=1, head="classifier"
    ):
        return "all-but-head"
    return None


def build_net(cfg: TrainConfig, num_classes: int, head: str, restoring: bool = False):
    """The net of the recipe, initialised (§3.1): random (Gaussian / Glorot), then, with
    ``init_from``, a warm start. Returns (net, what was warm-started, the source's preprocessing)."""
    torch.manual_seed(cfg.seed)
    net = create_model(
        cfg.arch,
        num_classes,
        width=cfg.width,
        fc_dim=cfg.fc_dim,
        crop_size=cfg.crop,
        dropout=cfg.dropout,
        batch_norm=cfg.batch_norm,
        head=head,
    )
    init_weights(net, cfg.init, cfg.init_std)
    if not cfg.init_from or restoring:  # a checkpoint will overwrite every weight
        return net, None, None
    source, source_meta = load_model(cfg.init_from)
    copied = warm_start(net, source, warm_layers(cfg.init_layers, source, net))
    return net, dict(source=cfg.init_from, layers=copied), source_meta.preprocessing


def freeze(net: VGG, finetune: str) -> None:
    """``fc``: only fc6, fc7 and fc8 learn; the conv layers keep the weights they started from
    (App. A: "only the first two FC layers" and the new box layer, as OverFeat did)."""
    if finetune == "fc":
        for p in net.features.parameters():
            p.requires_grad_(False)


def train_mode(run: "Run") -> None:
    """Training mode, except frozen layers: their batch-norm statistics stay as they were."""
    run.model.train()
    if run.cfg.finetune == "fc":
        run.net.features.eval()


def inherited_preprocessing(cfg: TrainConfig, source: Preprocessing | None, stats: dict) -> Preprocessing:
    """The run's preprocessing: the training set's mean (§2.1), or, for a warm start, the source
    net's own (its first layer was trained on that input: replacing it would silently change what
    the copied weights see); the PCA colour-shift pairs always come from the training data."""
    mine = Preprocessing.from_stats(stats)
    if source is None:
        return mine
    return dataclasses.replace(source, pca_eigval=mine.pca_eigval, pca_eigvec=mine.pca_eigvec)


def given_stats(cfg: TrainConfig) -> dict | None:
    """The statistics file given with --stats, read and checked before the run writes anything."""
    if not cfg.stats:
        return None
    stats = load_stats(cfg.stats)
    Preprocessing.from_stats(stats)
    return stats


def check_inheritance(cfg: TrainConfig, source: Preprocessing | None, given_stats: dict | None) -> None:
    """A warm start keeps the source's preprocessing; statistics given with --stats that say
    otherwise are refused rather than silently overruled."""
    if source is None or given_stats is None:
        return
    given = Preprocessing.from_stats(given_stats)
    close = (
        source.channel_order == "RGB"
        and source.value_range == 255.0
        and source.std == (1.0, 1.0, 1.0)
        and max(abs(a - b) for a, b in zip(source.mean, given.mean)) < 0.5
    )
    if not close:
        raise VGGError(
            f"--init-from {cfg.init_from} expects its input as {source.describe()}, but --stats "
            f"{cfg.stats} says {given.describe()}; a warm start keeps the source's preprocessing: "
            f"drop --stats (the colour-shift statistics are then computed from the data)"
        )


def colour_stats(cfg: TrainConfig, dist: Dist, run_dir: Path, source: Source, given: dict | None) -> dict:
    """Mean RGB and RGB eigen-pairs (§2.1, §3.1): given, cached in the run folder, or computed.
    Rank 0 alone decides where they come from and every rank joins the broadcast: a rank that
    looked for stats.json itself could find rank 0's fresh file and skip it."""
    stats = None
    if dist.is_main:
        if given is not None:
            stats = given
        elif (run_dir / "stats.json").is_file() and cfg.resume:
            stats = load_stats(run_dir / "stats.json")
        else:
            stats = compute_stats(source, cfg.stats_max_images, cfg.seed, cfg.workers, progress=cfg.progress)
            save_stats(run_dir / "stats.json", stats)
    return dist.broadcast_object(stats)


def param_groups(model, weight_decay: float, decay_biases: bool):
    """§3.1's weight decay; decision: on weights, not biases (as the released solvers did), unless asked."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:  # frozen layers (--finetune fc) are not the optimizer's
            (decay if p.dim() > 1 or decay_biases else no_decay).append(p)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def make_optimizer(cfg: TrainConfig, net: VGG, policy: DevicePolicy) -> torch.optim.Optimizer:
    """§3.1: mini-batch SGD with momentum 0.9 (fused kernels on CUDA)."""
    return torch.optim.SGD(
        param_groups(net, cfg.weight_decay, cfg.decay_biases),
        lr=cfg.lr,
        momentum=cfg.momentum,
        **({"fused": True} if policy.device.type == "cuda" else {}),
    )


def restore(run: "Run") -> None:
    """Load a resumed run's weights, momentum, schedule and position from ``last``."""

    tensors, saved, state = load_last(run.run_dir)
    check_position(run, state)
    weights = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    try:
        check_state_dict(run.net, weights)
    except VGGError as e:
        raise VGGError(f"{run.run_dir / LAST}: {e}") from None
    run.net.load_state_dict(weights)
    load_optimizer_tensors(run.optimizer, tensors)
    run.state = state
    run.meta = run.meta.replace(
        preprocessing=saved.preprocessing,
        train=dataclasses.replace(run.meta.train, warm_start=saved.train.warm_start if saved.train else None),
    )
    run.normalizer = Normalizer(saved.preprocessing).to(run.policy.device)
    run.schedule = PlateauSchedule.from_state(state.schedule, parse_milestones(run.cfg.lr_milestones))
    for g in run.optimizer.param_groups:
        g["lr"] = run.schedule.lr


def check_position(run: "Run", state: TrainState) -> None:
    """A checkpoint's position must be one this run can reach: a step of an epoch of its data and
    batch size (the last one when stopped before the epoch's validation), and one history record
    per finished epoch (a state from another data set, or edited by hand, would otherwise train on
    from nowhere)."""
    steps, where = run.steps_per_epoch, run.run_dir / LAST
    if state.step > steps:
        raise VGGError(
            f"{where}: the training state claims step {state.step:,} of epoch {state.epoch + 1}, "
            f"but an epoch of this run has {steps} steps ({len(run.train_source)} images, batch "
            f"{run.cfg.batch_size}); refusing to resume from it"
        )
    if state.epoch != len(state.history):
        raise VGGError(
            f"{where}: the training state claims {state.epoch:,} finished epochs but records "
            f"{len(state.history)}; refusing to resume from it"
        )


def wrap(cfg: TrainConfig, dist: Dist, net: VGG) -> torch.nn.Module:
    """The module the loop calls: DDP for synchronous data parallelism (§3.3), compiled if asked."""
    model = net
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
        )
    return torch.compile(model) if cfg.compile else model


def claim_run_dir(cfg: TrainConfig, dist: Dist, run_dir: Path):
    """Rank 0 locks the run folder and writes the run's config.yaml (a new run's, or kept on resume)."""
    if not dist.is_main:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run_dir(run_dir)
    if not (run_dir / "config.yaml").is_file() or not cfg.resume:
        save_config(run_dir / "config.yaml", cfg)
    return lock


def new_schedule(cfg: TrainConfig) -> PlateauSchedule:
    """§3.1's plateau rule, or the fixed milestones of ``--lr-milestones``."""
    milestones = parse_milestones(cfg.lr_milestones)
    return PlateauSchedule(
        cfg.lr, cfg.lr_factor, cfg.lr_patience, cfg.lr_drops, cfg.min_delta, milestones=milestones
    )


def build_run(cfg: TrainConfig, dist: Dist, objective) -> Run:
    check_run_dir(cfg)
    # Every rank decides --resume auto before rank 0 writes anything; rank 0's answer is everyone's.
    cfg.resume = dist.broadcast_object(cfg.resume)
    run_dir = Path(cfg.out)
    policy = make_policy(dist.device, cfg.amp, cfg.channels_last)
    configure_backends(policy, cfg.deterministic)  # --deterministic; cuDNN autotuning and TF32 on CUDA
    train_source, val_source = objective.open_data(cfg)
    objective.check_source(train_source)
    sampler = TrainBatches(len(train_source), cfg.batch_size, cfg.seed, dist.rank, dist.world_size)
    transform = TrainTransform(cfg.scale, cfg.crop)
    restoring = cfg.resume and (run_dir / LAST).is_file()
    net, warm, source_preprocessing = build_net(cfg, len(train_source.classes), objective.head, restoring)
    stats = given_stats(cfg)
    check_inheritance(cfg, source_preprocessing, stats)
    freeze(net, cfg.finetune)
    lock = claim_run_dir(cfg, dist, run_dir)
    preprocessing = inherited_preprocessing(
        cfg, source_preprocessing, colour_stats(cfg, dist, run_dir, train_source, stats)
    )
    loader = train_loader(
        train_source,
        transform,
        sampler,
        cfg.workers,
        pin_memory=policy.device.type == "cuda",
        targets=objective.train_targets(train_source),
    )
    val_scale = cfg.val_scale or default_scales(cfg.scale, cfg.crop)[0]
    policy.prepare(net)
    optimizer = make_optimizer(cfg, net, policy)
    schedule = new_schedule(cfg)
    info = TrainInfo(
        tuple(cfg.scale),
        cfg.crop,
        val_scale,
        cfg.recipe,
        to_dict(cfg),
        warm,
        objective.name,
        f"{policy.precision} ({policy.reason})",
    )
    meta = WeightsMeta(net.spec, list(train_source.classes), preprocessing, info)
    run = Run(
        cfg=cfg,
        dist=dist,
        policy=policy,
        objective=objective,
        run_dir=run_dir,
        train_source=train_source,
        val_source=val_source,
        val_scale=val_scale,
        sampler=sampler,
        loader=loader,
        normalizer=Normalizer(preprocessing).to(policy.device),
        net=net,
        model=net,
        optimizer=optimizer,
        schedule=schedule,
        meta=meta,
        state=TrainState(),
    )
    run.lock = lock
    try:
        if restoring:
            restore(run)  # may refuse the checkpoint: the folder is then left as it was, without a lock
        run.model = wrap(cfg, dist, net)
    except BaseException:
        release_lock(run)
        raise
    return run
