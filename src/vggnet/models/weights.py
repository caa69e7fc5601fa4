"""Weights I/O.

Our format is one ``.safetensors`` file: the state dict (torchvision key names) plus, in the
safetensors header, the metadata of :mod:`vggnet.models.meta` (architecture, classes,
preprocessing, how the weights were trained) as one JSON document under the key ``vggnet``.
Loading never unpickles anything, and checks every shape against the architecture before
allocating the net.

torchvision's VGG state dicts (``vgg11/13/16/19`` and their ``_bn`` variants) are imported and
exported by key name and shape: the layout is the same, so the mapping is the identity on keys,
with the architecture inferred from the number of conv layers.
"""

from __future__ import annotations

import copy
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from ..data.imagenet import imagenet_classes
from ..data.preprocessing import PRESETS
from ..data.transforms import Normalizer
from ..errors import VGGError
from ..fileio import atomic_write, file_kind, write_text
from .configs import TORCHVISION_NAMES
from .meta import ArchSpec, WeightsMeta
from .vgg import VGG, model_from_spec

TORCHVISION_TO_CONFIG = {v: k for k, v in TORCHVISION_NAMES.items()}
CONV_COUNT_TO_CONFIG = {8: "A", 10: "B", 13: "D", 16: "E"}
HEADER_KEY = "vggnet"


def save_weights(path, model: VGG, meta, extra_tensors: dict | None = None) -> Path:
    """Write `model`'s weights and `meta` (a :class:`WeightsMeta`, or a plain mapping read through
    it) atomically. `extra_tensors` (e.g. optimizer state) are stored beside the weights under
    their own key prefix. Non-finite weights are refused: a file we write is always usable."""

    if not isinstance(meta, WeightsMeta):
        meta = WeightsMeta.from_dict(dict(meta), str(path), model=model.spec)
    meta = meta.replace(model=model.spec)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise VGGError(f"refusing to write {path}: weight {k!r} is not finite (the run diverged)")
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().to("cpu").contiguous()
    return atomic_write(
        path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata={HEADER_KEY: meta.to_json()})
    )


def _header(path: Path) -> dict:
    if not path.is_file():
        raise VGGError(f"weights file not found: {path}")
    try:
        with safetensors.torch.safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        kind = file_kind(path)
        if kind in ("PyTorch state dict", "Caffe weights"):
            raise VGGError(
                f"{path}: {kind}; import it first: vggnet convert {path} NAME.safetensors"
            ) from None
        raise VGGError(f"{path}: not a readable safetensors file ({e})") from None


def is_vggnet_file(path) -> bool:
    """Whether `path` is one of our weight files (a safetensors file with our metadata)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        return HEADER_KEY in _header(path)
    except VGGError:
        return False


def read_meta(path) -> WeightsMeta:
    """The metadata of one of our weight files, checked, without reading its tensors."""
    path = Path(path)
    header = _header(path)
    if HEADER_KEY not in header:
        raise VGGError(
            f"{path}: a safetensors file without vggnet metadata; import foreign weights "
            f"with `vggnet convert`"
        )
    return WeightsMeta.from_json(header[HEADER_KEY], str(path))


def read_weights(path) -> tuple[dict[str, torch.Tensor], WeightsMeta]:
    """The tensors and metadata of one of our weight files, with a clear error if it is not one."""

    meta = read_meta(path)
    try:
        tensors = safetensors.torch.load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise VGGError(f"{path}: not a readable safetensors file ({e})") from None
    return tensors, meta


def check_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Refuse a state dict that does not fit `model`, naming the first offending key."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise VGGError(
                f"weights do not match the model: key {key!r} (shape {tuple(value.shape)}) is missing"
            )
        if tuple(state[key].shape) != tuple(value.shape):
            raise VGGError(
                f"weights do not match the model: key {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}"
            )
    for key in state:
        if key not in expected:
            raise VGGError(
                f"weights do not match the model: unexpected key {key!r} (shape {tuple(state[key].shape)})"
            )


def build_checked(spec: ArchSpec, state: dict, where="") -> VGG:
    """The net of `spec` holding `state`. The shapes are checked on a net without storage first, so
    a file whose metadata claims a huge net allocates nothing before it is refused."""
    with torch.device("meta"):
        skeleton = model_from_spec(spec)
    try:
        check_state_dict(skeleton, state)
    except VGGError as e:
        raise VGGError(f"{where}: {e}" if where else str(e)) from None
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise VGGError(
                f"{where}: weight {key!r} is not finite (these weights come from a diverged run); "
                f"refusing to use them"
            )
    model = model_from_spec(spec)
    model.load_state_dict(state)
    return model


def load_model(path, device="cpu") -> tuple[VGG, WeightsMeta]:
    """Build the model described by a weight file and load its weights. Returns (model, meta)."""
    tensors, meta = read_weights(path)
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    return build_checked(meta.model, state, str(path)).to(device), meta


def default_classes(n: int) -> list[str]:
    """Class names for weights that carry none: the ImageNet-1k wnids in index order for a
    1000-output net (the order of torchvision's and Caffe's releases), else "0".."n-1"."""
    if n == 1000:
        return imagenet_classes()
    return [str(i) for i in range(n)]


# -- torchvision ----------------------------------------------------------------------------------
def _read_foreign_state(path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return safetensors.torch.load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise VGGError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        # weights_only: tensors and plain containers only, never arbitrary objects.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a state dict
        why = " ".join(str(e).split()).split(". ")[0][
            :200
        ]  # torch's advice about weights_only does not apply
        raise VGGError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}: {why})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VGGError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_torchvision_arch(state: dict) -> dict:
    """create_model arguments for a torchvision VGG state dict, from its keys and shapes."""
    convs = [
        k for k, v in state.items() if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4
    ]
    if "classifier.0.weight" not in state or "classifier.6.weight" not in state or not convs:
        raise VGGError(
            "not a torchvision VGG state dict: expected keys features.N.weight and classifier.{0,3,6}.weight"
        )
    if len(convs) not in CONV_COUNT_TO_CONFIG:
        raise VGGError(
            f"a VGG state dict with {len(convs)} conv layers matches none of torchvision's "
            f"vgg11/13/16/19 (8, 10, 13, 16 conv layers)"
        )
    first = state[convs[0]]
    fc6 = state["classifier.0.weight"]
    last_channels = state[convs[-1]].shape[0]
    side = int(round((fc6.shape[1] / last_channels) ** 0.5))
    return dict(
        arch=CONV_COUNT_TO_CONFIG[len(convs)],
        num_classes=int(state["classifier.6.weight"].shape[0]),
        width=first.shape[0] / 64,
        fc_dim=int(fc6.shape[0]),
        crop_size=32 * side,
        batch_norm=any(k.endswith("running_mean") for k in state),
    )


def import_torchvision(path, arch: str | None = None, classes=None) -> tuple[VGG, WeightsMeta]:
    """Load a torchvision VGG state dict into our model. `arch` ("vgg16", "D", ...) is checked
    against the file; it is inferred when omitted. Returns (model, meta)."""
    state = _read_foreign_state(path)
    kwargs = infer_torchvision_arch(state)
    if arch is not None:
        want = TORCHVISION_TO_CONFIG.get(arch.removesuffix("_bn"), arch)
        if want not in TORCHVISION_NAMES:
            raise VGGError(
                f"torchvision has no counterpart of {arch!r}; valid: "
                + ", ".join(f"{v} ({k})" for k, v in TORCHVISION_NAMES.items())
            )
        kwargs["arch"] = want
        kwargs["batch_norm"] = arch.endswith("_bn") or kwargs["batch_norm"]
    model = build_checked(ArchSpec(**kwargs), state, str(path))
    n = kwargs["num_classes"]
    if classes is None and classes_file(path).is_file():
        classes = read_class_names(classes_file(path))
    classes = list(classes) if classes is not None else default_classes(n)
    if len(classes) != n:
        raise VGGError(f"{len(classes)} class names given for a net with {n} outputs")
    return model, WeightsMeta(
        model.spec, classes, PRESETS["torchvision"], source=dict(kind="torchvision", file=str(path))
    )


def classes_file(path) -> Path:
    """The class names that travel beside a weight format that has no field for them
    (``vgg16.pth`` -> ``vgg16.classes.txt``, one name per line, in output order)."""
    path = Path(path)
    return path.with_name(path.stem + ".classes.txt")


def read_class_names(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"class-name file not found: {path}")
    if path.stat().st_size > 10_000_000:
        raise VGGError(f"{path}: too large for a list of class names")
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise VGGError(f"{path}: not UTF-8 text (expected one class name per line)") from None


@torch.no_grad()
def fold_preprocessing(model: VGG, source, target) -> VGG:
    """A copy of `model` that takes input preprocessed as `target` and computes what `model`
    computes on the same image preprocessed as `source`: the change of channel order, value range,
    mean and std is folded into conv1_1 (y_src = a * y_tgt + b per channel: W' = W a, bias' =
    bias + sum(W b)). Exact away from the image border; on the one-pixel border the zero padding
    stands for the target's mean colour instead of the source's (`fold_check` measures it)."""
    folded = copy.deepcopy(model).cpu()
    conv = folded.weight_layers()["conv1_1"]
    order = [2, 1, 0] if source.channel_order != target.channel_order else [0, 1, 2]
    w = conv.weight.double()
    new_w, shift = torch.zeros_like(w), torch.zeros(w.shape[0], dtype=torch.float64)
    for k in range(3):  # source channel k is target channel order[k]
        j = order[k]
        a = source.value_range * target.std[j] / (target.value_range * source.std[k])
        b = (source.value_range * target.mean[j] / target.value_range - source.mean[k]) / source.std[k]
        new_w[:, j] = w[:, k] * a
        shift += w[:, k].sum(dim=(1, 2)) * b
    conv.weight.copy_(new_w.float())
    conv.bias.add_(shift.float())
    return folded


@torch.no_grad()
def fold_check(model: VGG, folded: VGG, source, target, images: int = 4) -> float:
    """The largest difference of soft-max outputs between `model` on `source` input and `folded`
    on `target` input, over random images (the border effect of :func:`fold_preprocessing`)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (images, 3, model.crop_size, model.crop_size), dtype=torch.uint8, generator=g)
    was = model.training
    model.eval()
    folded.eval()
    a = torch.softmax(model.cpu()(Normalizer(source)(x)), 1)
    b = torch.softmax(folded(Normalizer(target)(x)), 1)
    model.train(was)
    return float((a - b).abs().max())


def export_torchvision(model: VGG, path, classes=None) -> Path:
    """Write `model` as a torchvision-loadable state dict (``.pth``, or ``.safetensors``), and its
    class names beside it (:func:`classes_file`). The model must expect torchvision's input: see
    :func:`fold_preprocessing` for one that does not."""
    if model.arch not in TORCHVISION_NAMES:
        raise VGGError(
            f"torchvision has no counterpart of config {model.arch}; exportable: "
            + ", ".join(f"{k} ({v})" for k, v in TORCHVISION_NAMES.items())
        )
    if model.spec.head != "classifier":
        raise VGGError(f"a {model.spec.head} box regressor has no torchvision counterpart")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        atomic_write(path, lambda tmp: safetensors.torch.save_file(state, tmp))
    else:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    if classes is not None:  # after the weights: a failed export leaves neither file
        try:
            write_text(classes_file(path), "".join(f"{c}\n" for c in classes))
        except BaseException:
            Path(path).unlink(missing_ok=True)
            raise
    return Path(path)
