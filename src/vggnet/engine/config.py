"""Layered, typed training configuration: dataclass defaults <- YAML recipe <- command-line
overrides. Every value is type-checked and the whole config validated before any work starts;
the resolved config is saved in the run folder (``config.yaml``)."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..data.transforms import MAX_SIDE, Scale, check_scale
from ..errors import VGGError, unknown
from ..fileio import write_text
from ..models.arch import check_model_args, resolve_arch
from ..runtime.device import AMP_CHOICES, SWITCHES, resolve_device


def setting(default, help: str, choices: tuple | None = None, bounds: tuple | None = None):
    """A field of TrainConfig with its --help line and its allowed values or bounds."""
    return field(default=default, metadata=dict(help=help, choices=choices, bounds=bounds))


@dataclass
class TrainConfig:
    """Every setting of a training run, each declared once: default, --help line, and the allowed
    values (choices) or bounds (low, high, low excluded, high excluded; NaN fails every comparison
    and is refused too). The comments say why; the help says what."""

    # -- the net (create_model arguments) --
    arch: str = setting(
        "A", "Table 1 configuration or torchvision name: A, A-LRN, B, C, D, E, B-5x5, vgg11 ... vgg19_bn"
    )
    width: float = setting(1.0, "conv widths x this (1 = the paper's)", bounds=(0, 16, True, False))
    fc_dim: int = setting(4096, "width of fc6 and fc7 (4096 in the paper)", bounds=(1, 65_536, False, False))
    crop: int = setting(224, "training crop side, a multiple of 32 (224 in the paper)")
    dropout: float = setting(0.5, "dropout on fc6 and fc7", bounds=(0, 1, False, True))
    batch_norm: bool = setting(False, "batch norm after every conv (not in the paper)")
    # -- what is learnt --
    objective: str = setting(
        "classification", "what is learnt: classification, or boxes (App. A; see `vggnet loc train`)"
    )
    head: str = setting(
        "auto",
        "last layer: classifier; box heads scr (4 outputs) or pcr (4 per class)",
        choices=("auto", "classifier", "scr", "pcr"),
    )
    # -- data --
    data: str | None = setting(
        None, "training data: image folder or path,label CSV (boxes: box CSV or XML folder)"
    )
    data_root: str | None = setting(None, "root of the image paths of a CSV")
    val_data: str | None = setting(None, "validation data (default: hold out --val-fraction)")
    val_fraction: float = setting(
        0.05, "part of --data held out for validation when --val-data is not given", bounds=(0, 1, True, True)
    )
    # §3.1: single-scale training at a fixed S, or multi-scale by jittering S in [Smin, Smax]
    scale: Scale = setting(Scale(256, 256), "training scale S (256) or jittering range Smin:Smax (256:512)")
    # §4.1: validation at Q = S, or (Smin+Smax)/2 for a jittered S
    val_scale: int | None = setting(
        None, "test scale Q of the per-epoch validation (default: S, or (Smin+Smax)/2)"
    )
    stats: str | None = setting(None, "statistics of `vggnet stats` (default: computed into the run folder)")
    stats_max_images: int = setting(
        10_000, "images sampled for the statistics", bounds=(1, 10_000_000, False, False)
    )
    colour_shift: bool = setting(True, "PCA colour shift (§3.1)")
    workers: int = setting(4, "decoding processes", bounds=(0, 256, False, False))
    on_bad_image: str = setting(
        "skip", "an unreadable training image: skip (counted) or fail", choices=("skip", "fail")
    )
    on_bad_box: str = setting(
        "fail", "a bad box row: fail (before any work) or skip", choices=("fail", "skip")
    )
    # -- the recipe (§3.1) --
    batch_size: int = setting(
        256, "global batch, split across processes", bounds=(1, 1_000_000, False, False)
    )
    micro_batch: int = setting(
        0, "per-process micro-batch (gradient accumulation); 0: none", bounds=(0, 1_000_000, False, False)
    )
    lr: float = setting(0.01, "initial learning rate", bounds=(0, 10, True, False))
    momentum: float = setting(0.9, "SGD momentum", bounds=(0, 1, False, True))
    weight_decay: float = setting(5e-4, "L2 weight decay", bounds=(0, 1, False, True))
    # decision: L2 on weights only, as the released solvers did
    decay_biases: bool = setting(False, "decay biases too")
    epochs: int = setting(
        74, "epoch cap (the plateau rule usually stops earlier)", bounds=(1, 100_000, False, False)
    )
    lr_factor: float = setting(0.1, "learning-rate drop factor", bounds=(0, 1, True, True))
    lr_patience: int = setting(
        2, "epochs without improvement before a drop", bounds=(0, 100_000, False, False)
    )
    # the paper decreased the rate 3 times, then stopped
    lr_drops: int = setting(3, "drops before training stops", bounds=(0, 100, False, False))
    # a fixed schedule instead of the plateau rule, for equal schedules across runs
    lr_milestones: str = setting(
        "", "fixed schedule: divide the rate by lr-factor after these epochs, e.g. 6,9 (plateau rule off)"
    )
    # not in the paper: a warm-started net can collapse under its first full-rate steps
    lr_warmup: float = setting(
        0.0,
        "linear warm-up: the rate rises step by step to --lr over these first epochs (0: none)",
        bounds=(0, 1000, False, False),
    )
    min_delta: float = setting(0.0, "improvement (points) that counts", bounds=(0, 100, False, False))
    init: str = setting(
        "gaussian", "random initialisation: gaussian or glorot", choices=("gaussian", "glorot")
    )
    init_std: float = setting(0.01, "std of the gaussian initialisation", bounds=(0, 10, True, False))
    # warm start (net A -> deeper net, or the same net at another S)
    init_from: str | None = setting(None, "checkpoint to warm-start from")
    # App. A: fine-tuning only the fully connected layers, as OverFeat did
    finetune: str = setting(
        "all", "all layers, or fc (fc6-fc8 only, conv layers frozen)", choices=("all", "fc")
    )
    init_layers: str = setting(
        "auto",
        "layers copied from --init-from: auto, paper, all, all-but-head",
        choices=("auto", "paper", "all", "all-but-head"),
    )
    seed: int = setting(0, "random seed", bounds=(0, 2**32 - 1, False, False))
    # -- run --
    out: str | None = setting(None, "run folder (new, or the one to --resume)")
    # True: continue the run in `out`; "auto": continue it if there is one, else start it
    resume: bool | str = setting(
        False,
        "continue the run in --out; `--resume auto`: continue it if --out holds "
        "this run, else start it (for commands re-run by torchrun or a scheduler)",
    )
    device: str = setting("auto", "auto, cpu, cuda, cuda:N")
    amp: str = setting(
        "auto",
        "bf16 autocast, fp32 weights: auto (on CUDA and on CPUs with amx_bf16/avx512_bf16), on, off",
        choices=AMP_CHOICES,
    )
    channels_last: str = setting("auto", "NHWC activations: auto (on), on, off", choices=SWITCHES)
    compile: bool = setting(False, "torch.compile the model")
    deterministic: bool = setting(False, "deterministic algorithms (slower)")
    # mid-epoch checkpoints, so a killed run loses little
    checkpoint_minutes: float = setting(
        10.0, "mid-epoch checkpoint at least this often", bounds=(0, 1e6, True, False)
    )
    checkpoint_steps: int = setting(0, "also every N steps (0: off)", bounds=(0, 10**9, False, False))
    collective_timeout: float = setting(
        10.0,
        "minutes a process waits for a lost or hung one (several processes)",
        bounds=(0, 10_000, True, False),
    )
    max_steps_per_epoch: int = setting(
        0, "cap steps per epoch (0: whole epochs)", bounds=(0, 10**9, False, False)
    )
    tensorboard: bool = setting(False, "write TensorBoard events")
    progress: bool = setting(True, "progress bar on a terminal")
    recipe: str = setting(
        "", 'name of the paper experiment, recorded in the weights (e.g. "Table 3, D, S=256")'
    )


FIELDS = dataclasses.fields(TrainConfig)
HELP = {f.name: f.metadata["help"] for f in FIELDS}  # one line of --help per setting
CHOICES = {f.name: f.metadata["choices"] for f in FIELDS if f.metadata["choices"]}
RANGES = {
    f.name: f.metadata["bounds"] for f in FIELDS if f.metadata["bounds"]
}  # (low, high, low/high excluded)

# Settings a resumed run may change; everything else must match the saved config.
RESUME_MAY_CHANGE = {
    "resume",
    "out",
    "device",
    "workers",
    "epochs",
    "progress",
    "tensorboard",
    "compile",
    "checkpoint_minutes",
    "checkpoint_steps",
    "collective_timeout",
}
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
        out[name] = (
            args[0] if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else hint
        )
    return out


def coerce(name: str, value):
    """Check and convert one value to its field's type."""
    types_ = field_types()
    if name not in types_:
        raise unknown("config key", name, sorted(types_))
    t = types_[name]
    if value is None:
        return None
    if name == "resume" and value == "auto":  # the one setting that is a choice as well as a switch
        return value
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
    raise VGGError(
        f"recipe not found: {recipe} (a YAML file, or one of the shipped recipes: {', '.join(names)})"
    )


MAX_RECIPE_BYTES = 64 * 1024


def read_recipe(path: Path) -> dict:
    """A recipe's settings: a small UTF-8 YAML mapping of names to plain values. Aliases are
    refused (a recipe has no use for them, and a few hundred bytes of nested aliases expand to
    gigabytes)."""
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise VGGError(
            f"{path}: {size:,} bytes; a recipe is a short settings file (at most {MAX_RECIPE_BYTES:,})"
        )
    try:
        text = path.read_bytes().decode("utf-8")
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: nothing is expanded yet
            if isinstance(event, yaml.AliasEvent):
                raise VGGError(f"{path}: uses YAML aliases (*name); a recipe is a plain mapping of settings")
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > 2:  # the settings mapping, and the scale's [Smin, Smax]
                raise VGGError(f"{path}: nested collections; a recipe is a plain mapping of settings")
        _refuse_duplicates(path, yaml.compose(text, Loader=yaml.SafeLoader))
        loaded = yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise VGGError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise VGGError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise VGGError(
            f"{path}: a recipe is a mapping of settings (name: value), got {type(loaded).__name__}"
        )
    bad = [k for k in loaded if not isinstance(k, str)]
    if bad:
        raise VGGError(f"{path}: setting names must be words, got {bad[0]!r}")
    nested = [k for k, v in loaded.items() if isinstance(v, (dict, list)) and k != "scale"]
    if nested:
        raise VGGError(f"{path}: setting {nested[0]!r} must be a single value")
    return loaded


def resume_recipe(recipe: str | None, out, resume) -> str | None:
    """The recipe of a run: the one given, or, to continue a run (`resume` with its folder `out`
    alone), the run's own config.yaml."""
    if resume is True and out and not recipe and (Path(out) / "config.yaml").is_file():
        return str(Path(out) / "config.yaml")
    return recipe


def _refuse_duplicates(path: Path, node) -> None:
    """A setting given twice would be silently overruled by its later line (YAML keeps the last):
    refused, naming both lines. ``batch-size`` and ``batch_size`` are one setting."""
    if not isinstance(node, yaml.MappingNode):
        return
    first = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            name, line = key.value.replace("-", "_"), key.start_mark.line + 1
            if name in first:
                raise VGGError(
                    f"{path}: setting {key.value!r} is given twice (lines {first[name]} and "
                    f"{line}); a recipe names each setting once"
                )
            first[name] = line


def load_config(
    recipe: str | None = None, overrides: dict | None = None, base: dict | None = None
) -> TrainConfig:
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
    return {
        f.name: str(v) if isinstance(v, Scale) else v
        for f in dataclasses.fields(cfg)
        for v in [getattr(cfg, f.name)]
    }


def save_config(path, cfg: TrainConfig) -> None:
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _check_range(name: str, value) -> None:
    lo, hi, lo_open, hi_open = RANGES[name]
    ok = (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not ok:

        def num(v):
            return f"{v:,}" if isinstance(v, int) else f"{v:g}"

        interval = f"{'(' if lo_open else '['}{num(lo)}, {num(hi)}{')' if hi_open else ']'}"
        raise VGGError(f"{name.replace('_', '-')} must be in {interval}, got {value!r}")


def parse_milestones(text) -> tuple[int, ...]:
    """``"6,9"`` -> (6, 9): increasing epoch numbers >= 1 (empty: the plateau rule)."""
    text = str(text or "").strip()
    if not text:
        return ()
    try:
        epochs = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise VGGError(f"lr-milestones must be epoch numbers like 6,9, got {text!r}") from None
    if any(e < 1 for e in epochs) or list(epochs) != sorted(set(epochs)):
        raise VGGError(f"lr-milestones must be increasing epoch numbers >= 1, got {text!r}")
    return epochs


def check_settings(cfg: TrainConfig, world_size: int = 1) -> None:
    """Refuse impossible settings (no file is looked at): the recipe on its own."""
    parse_milestones(cfg.lr_milestones)

    if cfg.amp == "bf16":
        cfg.amp = "on"  # the older spelling, in config.yaml files of earlier runs
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
        raise VGGError(
            f"validation scale Q={cfg.val_scale} must be between the crop size {cfg.crop} and {MAX_SIDE}"
        )
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
            raise VGGError(
                "--tensorboard needs the tensorboard package: pip install 'vggnet[tensorboard]'"
            ) from None


def check_paths(cfg: TrainConfig) -> None:
    """Refuse missing inputs and a missing run folder name (the files' contents are checked when
    the run is built, still before anything is written)."""
    if cfg.resume and not cfg.out:  # the data and every setting come from the run folder
        raise VGGError("--resume continues a run: give its folder with --out RUN_DIR")
    if not cfg.data:
        raise VGGError("no training data: give --data (an image folder or a label file)")
    for name, path, kind in (
        ("training data", cfg.data, "exists"),
        ("validation data", cfg.val_data, "exists"),
        ("statistics file", cfg.stats, "is_file"),
        ("--init-from checkpoint", cfg.init_from, "is_file"),
    ):
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
