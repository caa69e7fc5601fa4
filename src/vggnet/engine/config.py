"""Layered, typed training configuration: dataclass defaults <- YAML recipe <- command-line
overrides. Every value is type-checked and the whole config validated before any work starts;
the resolved config is saved in the run folder (``config.yaml``)."""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..data.transforms import MAX_SIDE, Scale, check_scale
from ..errors import VGGError, unknown
from ..fileio import write_text
from ..models.arch import check_model_args, resolve_arch
from ..runtime.device import resolve_device


@dataclass
class TrainConfig:
    # -- the net (create_model arguments) --
    arch: str = "A"
    width: float = 1.0
    fc_dim: int = 4096
    crop: int = 224
    dropout: float = 0.5
    batch_norm: bool = False
    # -- what is learnt --
    objective: str = "classification"  # or "boxes": Appendix A's box regression (vggnet loc train)
    head: str = "auto"  # the last layer: classifier; for boxes scr (one box) or pcr (one per class, default)
    # -- data --
    data: str | None = None  # image folder or label file; for boxes a box file (CSV or annotation folder)
    data_root: str | None = None  # root of a label file's paths
    val_data: str | None = None
    val_fraction: float = 0.05  # held out of `data` when no val_data is given
    scale: Scale = Scale(256, 256)  # training scale S (256) or jittering range Smin:Smax (256:512), §3.1
    val_scale: int | None = None  # Q for per-epoch validation; default per §4.1 (S, or (Smin+Smax)/2)
    stats: str | None = None  # stats.json of `vggnet stats`; computed into the run folder if absent
    stats_max_images: int = 10_000
    colour_shift: bool = True
    workers: int = 4
    on_bad_image: str = "skip"  # or "fail"
    on_bad_box: str = "fail"  # or "skip": box files with bad rows are refused before any work unless skipped
    # -- the recipe (§3.1) --
    batch_size: int = 256  # global batch, split across processes
    micro_batch: int = 0  # per-process micro-batch for gradient accumulation; 0 = no accumulation
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    decay_biases: bool = False  # decision: L2 on weights only, as the released solvers did
    epochs: int = 74  # cap; the schedule usually stops earlier
    lr_factor: float = 0.1
    lr_patience: int = 2  # epochs without validation improvement before a drop
    lr_drops: int = 3  # the paper decreased the rate 3 times, then stopped
    min_delta: float = 0.0  # improvement of val top-1 error (percentage points) that counts
    init: str = "gaussian"
    init_std: float = 0.01
    init_from: str | None = None  # warm start (net A -> deeper net, or the same net at another S)
    finetune: str = "all"  # all | fc: train only fc6-fc8, the conv layers frozen (App. A, as OverFeat)
    init_layers: str = "auto"  # auto | paper | all | all-but-head
    seed: int = 0
    # -- run --
    out: str | None = None
    resume: bool = False
    device: str = "auto"
    amp: str = "auto"  # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"
    compile: bool = False
    deterministic: bool = False
    checkpoint_minutes: float = 10.0  # mid-epoch checkpoints, so a killed run loses little
    checkpoint_steps: int = 0  # also every N steps (0: off)
    max_steps_per_epoch: int = 0  # 0: whole epochs (a cap for quick experiments)
    tensorboard: bool = False
    progress: bool = True  # progress bar on a terminal; per-epoch lines are printed either way
    recipe: str = ""  # name of the paper experiment this reproduces, e.g. "Table 3, D, S=256"


# One line of --help per setting (the comments above say why; these say what).
HELP = {
    "arch": "Table 1 configuration or torchvision name: A, A-LRN, B, C, D, E, B-5x5, vgg11 ... vgg19_bn",
    "width": "conv widths x this (1 = the paper's)", "fc_dim": "width of fc6 and fc7 (4096 in the paper)",
    "crop": "training crop side, a multiple of 32 (224 in the paper)", "dropout": "dropout on fc6 and fc7",
    "batch_norm": "batch norm after every conv (not in the paper)",
    "objective": "what is learnt: classification, or boxes (App. A; see `vggnet loc train`)",
    "head": "last layer: classifier; box heads scr (4 outputs) or pcr (4 per class)",
    "data": "training data: image folder or path,label CSV (boxes: box CSV or XML folder)",
    "data_root": "root of the image paths of a CSV", "val_data": "validation data (default: hold out --val-fraction)",
    "val_fraction": "part of --data held out for validation when --val-data is not given",
    "scale": "training scale S (256) or jittering range Smin:Smax (256:512)",
    "val_scale": "test scale Q of the per-epoch validation (default: S, or (Smin+Smax)/2)",
    "stats": "statistics of `vggnet stats` (default: computed into the run folder)",
    "stats_max_images": "images sampled for the statistics", "colour_shift": "PCA colour shift (§3.1)",
    "workers": "decoding processes", "on_bad_image": "an unreadable training image: skip (counted) or fail",
    "on_bad_box": "a bad box row: fail (before any work) or skip", "batch_size": "global batch, split across processes",
    "micro_batch": "per-process micro-batch (gradient accumulation); 0: none", "lr": "initial learning rate",
    "momentum": "SGD momentum", "weight_decay": "L2 weight decay", "decay_biases": "decay biases too",
    "epochs": "epoch cap (the plateau rule usually stops earlier)", "lr_factor": "learning-rate drop factor",
    "lr_patience": "epochs without improvement before a drop", "lr_drops": "drops before training stops",
    "min_delta": "improvement (points) that counts", "init": "random initialisation: gaussian or glorot",
    "init_std": "std of the gaussian initialisation", "init_from": "checkpoint to warm-start from",
    "finetune": "all layers, or fc (fc6-fc8 only, conv layers frozen)",
    "init_layers": "layers copied from --init-from: auto, paper, all, all-but-head", "seed": "random seed",
    "out": "run folder (new, or the one to --resume)", "device": "auto, cpu, cuda, cuda:N",
    "amp": "bf16 autocast: auto (on CUDA), bf16, off", "channels_last": "NHWC activations: auto (on), on, off",
    "compile": "torch.compile the model", "deterministic": "deterministic algorithms (slower)",
    "checkpoint_minutes": "mid-epoch checkpoint at least this often", "checkpoint_steps": "also every N steps (0: off)",
    "max_steps_per_epoch": "cap steps per epoch (0: whole epochs)", "tensorboard": "write TensorBoard events",
    "progress": "progress bar on a terminal", "recipe": "name of the paper experiment, recorded in the weights",
}

CHOICES = {"on_bad_image": ("skip", "fail"), "on_bad_box": ("fail", "skip"), "finetune": ("all", "fc"),
           "objective": ("classification", "boxes"), "head": ("auto", "classifier", "scr", "pcr"), "init": ("gaussian", "glorot"), "init_layers": ("auto", "paper", "all", "all-but-head"),
           "amp": ("auto", "bf16", "off"), "channels_last": ("auto", "on", "off")}
# Settings a resumed run may change; everything else must match the saved config.
RESUME_MAY_CHANGE = {"resume", "out", "device", "workers", "epochs", "progress", "tensorboard", "compile",
                     "checkpoint_minutes", "checkpoint_steps"}
PATH_SETTINGS = ("data", "data_root", "val_data", "stats", "init_from", "out")


def same_setting(name: str, old, new) -> bool:
    """Equal, or (for paths) naming the same file: ``./run`` and ``run`` are one folder."""
    if old == new:
        return True
    if name in PATH_SETTINGS and old and new:
        return os.path.realpath(str(old)) == os.path.realpath(str(new))
    return False


def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint
    return out


def coerce(name: str, value):
    """Check and convert one value to its field's type."""
    types_ = field_types()
    if name not in types_:
        raise unknown("config key", name, sorted(types_))
    t = types_[name]
    if value is None:
        return None
    if t is Scale:
        return Scale.parse(value)
    try:
        if t is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError
            if not isinstance(value, bool):
                raise ValueError
            return value
        if t is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise VGGError(f"config {name}: expected {t.__name__}, got {value!r}") from None


RECIPES = Path(__file__).resolve().parents[1] / "configs"  # the recipes shipped with the package


def find_recipe(recipe: str) -> Path:
    """A recipe file, or the name of a shipped one (``table3-D-S256``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    shipped = RECIPES / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file() and len(path.parts) <= 2:
        return shipped
    names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
    raise VGGError(f"recipe not found: {recipe} (a YAML file, or one of the shipped recipes: {', '.join(names)})")


MAX_RECIPE_BYTES = 64 * 1024


def read_recipe(path: Path) -> dict:
    """A recipe's settings: a small UTF-8 YAML mapping of names to plain values. Aliases are
    refused (a recipe has no use for them, and a few hundred bytes of nested aliases expand to
    gigabytes)."""
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise VGGError(f"{path}: {size:,} bytes; a recipe is a short settings file (at most {MAX_RECIPE_BYTES:,})")
    try:
        text = path.read_bytes().decode("utf-8")
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: nothing is expanded yet
            if isinstance(event, yaml.AliasEvent):
                raise VGGError(f"{path}: uses YAML aliases (*name); a recipe is a plain mapping of settings")
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > 2:  # the settings mapping, and the scale's [Smin, Smax]
                raise VGGError(f"{path}: nested collections; a recipe is a plain mapping of settings")
        loaded = yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise VGGError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise VGGError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise VGGError(f"{path}: a recipe is a mapping of settings (name: value), got {type(loaded).__name__}")
    bad = [k for k in loaded if not isinstance(k, str)]
    if bad:
        raise VGGError(f"{path}: setting names must be words, got {bad[0]!r}")
    nested = [k for k, v in loaded.items() if isinstance(v, (dict, list)) and k != "scale"]
    if nested:
        raise VGGError(f"{path}: setting {nested[0]!r} must be a single value")
    return loaded


def load_config(recipe: str | None = None, overrides: dict | None = None, base: dict | None = None) -> TrainConfig:
    """Defaults <- `base` (a command's own defaults) <- the recipe <- `overrides` (the flags)."""
    values = {k: coerce(k, v) for k, v in (base or {}).items()}
    if recipe:
        path = find_recipe(recipe)
        loaded = read_recipe(path)
        base = path.parent
        for k, v in loaded.items():
            k = k.replace("-", "_")
            values[k] = coerce(k, v)
            # Paths in a recipe are relative to the recipe's folder, like includes.
            if k == "init_from" and v and not os.path.isabs(str(v)) and (base / str(v)).exists():
                values[k] = str(base / str(v))
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = coerce(k, v)
    cfg = TrainConfig(**values)
    return cfg


def to_dict(cfg: TrainConfig) -> dict:
    """Plain values, as written to config.yaml (the scale in its written form, ``256:512``)."""
    return {f.name: str(v) if isinstance(v, Scale) else v
            for f in dataclasses.fields(cfg) for v in [getattr(cfg, f.name)]}


def save_config(path, cfg: TrainConfig) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


# Bounds of the numeric settings: (low, high, low excluded, high excluded). NaN fails every
# comparison, so it is refused too.
RANGES = {
    "width": (0, 16, True, False), "fc_dim": (1, 65_536, False, False), "dropout": (0, 1, False, True),
    "val_fraction": (0, 1, True, True), "stats_max_images": (1, 10_000_000, False, False),
    "workers": (0, 256, False, False), "batch_size": (1, 1_000_000, False, False),
    "micro_batch": (0, 1_000_000, False, False), "lr": (0, 10, True, False), "momentum": (0, 1, False, True),
    "weight_decay": (0, 1, False, True), "epochs": (1, 100_000, False, False), "lr_factor": (0, 1, True, True),
    "lr_patience": (0, 100_000, False, False), "lr_drops": (0, 100, False, False),
    "min_delta": (0, 100, False, False), "init_std": (0, 10, True, False), "seed": (0, 2**32 - 1, False, False),
    "checkpoint_minutes": (0, 1e6, True, False), "checkpoint_steps": (0, 10**9, False, False),
    "max_steps_per_epoch": (0, 10**9, False, False),
}


def _check_range(name: str, value) -> None:
    lo, hi, lo_open, hi_open = RANGES[name]
    ok = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not ok:
        def num(v):
            return f"{v:,}" if isinstance(v, int) else f"{v:g}"
        interval = f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
        raise VGGError(f"{name.replace('_', '-')} must be in {interval}, got {value!r}")


def check_settings(cfg: TrainConfig, world_size: int = 1) -> None:
    """Refuse impossible settings (no file is looked at): the recipe on its own."""

    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices:
            raise unknown(name.replace("_", "-"), getattr(cfg, name), choices)
    for name in RANGES:
        _check_range(name, getattr(cfg, name))
    cfg.arch, bn = resolve_arch(cfg.arch)  # vgg16 -> D, vgg16_bn -> D with batch norm
    cfg.batch_norm = cfg.batch_norm or bool(bn)
    check_model_args(cfg.arch, 1, cfg.width, cfg.fc_dim, cfg.crop, cfg.dropout)
    cfg.scale = check_scale(cfg.scale, cfg.crop)
    if cfg.val_scale is not None and not cfg.crop <= cfg.val_scale <= MAX_SIDE:
        raise VGGError(f"validation scale Q={cfg.val_scale} must be between the crop size {cfg.crop} and {MAX_SIDE}")
    if cfg.batch_size % world_size:
        raise VGGError(f"global batch {cfg.batch_size} must be a multiple of the {world_size} processes")
    local = cfg.batch_size // world_size
    if cfg.micro_batch and local % cfg.micro_batch:
        raise VGGError(f"micro-batch {cfg.micro_batch} must divide the per-process batch {local}")
    resolve_device(cfg.device)
    if cfg.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise VGGError("--tensorboard needs the tensorboard package: pip install 'vggnet[tensorboard]'") from None


def check_paths(cfg: TrainConfig) -> None:
    """Refuse missing inputs and a missing run folder name (the files' contents are checked when
    the run is built, still before anything is written)."""
    if not cfg.data:
        raise VGGError("no training data: give --data (an image folder or a label file)")
    for name, path, kind in (("training data", cfg.data, "exists"), ("validation data", cfg.val_data, "exists"),
                             ("statistics file", cfg.stats, "is_file"), ("--init-from checkpoint", cfg.init_from, "is_file")):
        if path and not getattr(Path(path), kind)():
            raise VGGError(f"{name} not found: {path}")
    if cfg.data_root and not Path(cfg.data_root).is_dir():
        raise VGGError(f"--data-root {cfg.data_root}: not a folder (the root of a label file's paths)")
    if not cfg.out:
        raise VGGError("no run folder: give --out RUN_DIR")


def validate(cfg: TrainConfig, world_size: int = 1) -> None:
    """Refuse impossible settings and missing inputs before any work starts."""
    check_settings(cfg, world_size)
    check_paths(cfg)
