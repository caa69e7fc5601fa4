"""Weights I/O.

Our format is one ``.safetensors`` file: the state dict (torchvision key names) plus, in the
safetensors header, a JSON document under the key ``vggnet`` with everything needed to use the
weights: the architecture and its arguments, the class names, the preprocessing (channel order,
value range, mean and std, PCA eigen-pairs for colour shift) and the recipe that produced them.
Loading never unpickles anything.

torchvision's VGG state dicts (``vgg11/13/16/19`` and their ``_bn`` variants) are imported and
exported by key name and shape: the layout is the same, so the mapping is the identity on keys,
with the architecture inferred from the number of conv layers.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import VGGError
from ..fileio import atomic_write
from .configs import TORCHVISION_NAMES
from .vgg import VGG
from .zoo import create_model

FORMAT = "vggnet-weights/1"

# Preprocessing conventions users meet (SPEC §6): ours (RGB, 0-255, mean subtraction only, §2),
# torchvision's (RGB, 0-1, mean/std) and the original Caffe release's (BGR, 0-255, mean pixel).
IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]
PREPROCESSING = {
    "vggnet": dict(channel_order="RGB", value_range=255.0, mean=IMAGENET_MEAN_RGB, std=[1.0, 1.0, 1.0]),
    "torchvision": dict(channel_order="RGB", value_range=1.0, mean=[0.485, 0.456, 0.406],
                        std=[0.229, 0.224, 0.225]),
    "caffe": dict(channel_order="BGR", value_range=255.0, mean=IMAGENET_MEAN_RGB[::-1], std=[1.0, 1.0, 1.0]),
}
TORCHVISION_TO_CONFIG = {v: k for k, v in TORCHVISION_NAMES.items()}
CONV_COUNT_TO_CONFIG = {8: "A", 10: "B", 13: "D", 16: "E"}


def save_weights(path, model: VGG, meta: dict, extra_tensors: dict | None = None) -> Path:
    """Write `model`'s weights and `meta` atomically. `extra_tensors` (e.g. optimizer state) are
    stored beside the weights under their own key prefix."""
    from safetensors.torch import save_file

    meta = dict(meta, format=FORMAT, arch=model.arch)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    for k, v in (extra_tensors or {}).items():
        tensors[k] = v.detach().to("cpu").contiguous()
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"vggnet": json.dumps(meta)}))


def read_weights(path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and metadata of one of our weight files, with a clear error if it is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise VGGError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise VGGError(f"{path}: not a readable safetensors file ({e})") from None
    if "vggnet" not in header:
        raise VGGError(f"{path}: a safetensors file without vggnet metadata; import foreign weights "
                       f"with `vggnet convert`")
    return tensors, json.loads(header["vggnet"])


def check_state_dict(model: torch.nn.Module, state: dict) -> None:
    """Refuse a state dict that does not fit `model`, naming the first offending key."""
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise VGGError(f"weights do not match the model: key {key!r} (shape {tuple(value.shape)}) is missing")
        if tuple(state[key].shape) != tuple(value.shape):
            raise VGGError(f"weights do not match the model: key {key!r} has shape {tuple(state[key].shape)}, "
                           f"the model expects {tuple(value.shape)}")
    for key in state:
        if key not in expected:
            raise VGGError(f"weights do not match the model: unexpected key {key!r} "
                           f"(shape {tuple(state[key].shape)})")


def load_model(path, device="cpu") -> tuple[VGG, dict]:
    """Build the model described by a weight file and load its weights. Returns (model, meta)."""
    tensors, meta = read_weights(path)
    arch = meta.get("arch")
    if not isinstance(arch, dict):
        raise VGGError(f"{path}: metadata has no architecture")
    model = create_model(**arch)
    state = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    check_state_dict(model, state)
    model.load_state_dict(state)
    return model.to(device), meta


# -- torchvision ----------------------------------------------------------------------------------
def _read_foreign_state(path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        # weights_only: tensors and plain containers only, never arbitrary objects.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a file that is not a state dict
        raise VGGError(f"{path}: cannot read as a PyTorch state dict ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise VGGError(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def infer_torchvision_arch(state: dict) -> dict:
    """create_model arguments for a torchvision VGG state dict, from its keys and shapes."""
    convs = [k for k, v in state.items() if k.startswith("features.") and k.endswith(".weight") and v.dim() == 4]
    if "classifier.0.weight" not in state or "classifier.6.weight" not in state or not convs:
        raise VGGError("not a torchvision VGG state dict: expected keys features.N.weight and "
                       "classifier.{0,3,6}.weight")
    if len(convs) not in CONV_COUNT_TO_CONFIG:
        raise VGGError(f"a VGG state dict with {len(convs)} conv layers matches none of torchvision's "
                       f"vgg11/13/16/19 (8, 10, 13, 16 conv layers)")
    first = state[convs[0]]
    fc6 = state["classifier.0.weight"]
    last_channels = state[convs[-1]].shape[0]
    side = int(round((fc6.shape[1] / last_channels) ** 0.5))
    return dict(name=CONV_COUNT_TO_CONFIG[len(convs)], num_classes=int(state["classifier.6.weight"].shape[0]),
                width=first.shape[0] / 64, fc_dim=int(fc6.shape[0]), crop_size=32 * side,
                batch_norm=any(k.endswith("running_mean") for k in state))


def import_torchvision(path, arch: str | None = None, classes=None) -> tuple[VGG, dict]:
    """Load a torchvision VGG state dict into our model. `arch` ("vgg16", "D", ...) is checked
    against the file; it is inferred when omitted. Returns (model, meta)."""
    state = _read_foreign_state(path)
    kwargs = infer_torchvision_arch(state)
    if arch is not None:
        want = TORCHVISION_TO_CONFIG.get(arch.removesuffix("_bn"), arch)
        if want not in TORCHVISION_NAMES:
            raise VGGError(f"torchvision has no counterpart of {arch!r}; valid: "
                           + ", ".join(f"{v} ({k})" for k, v in TORCHVISION_NAMES.items()))
        kwargs["name"] = want
        kwargs["batch_norm"] = arch.endswith("_bn") or kwargs["batch_norm"]
    model = create_model(**kwargs)
    check_state_dict(model, state)
    model.load_state_dict(state)
    n = kwargs["num_classes"]
    classes = list(classes) if classes is not None else [str(i) for i in range(n)]
    if len(classes) != n:
        raise VGGError(f"{len(classes)} class names given for a net with {n} outputs")
    meta = dict(classes=classes, preprocessing=dict(PREPROCESSING["torchvision"]),
                source=dict(kind="torchvision", file=str(path)))
    return model, meta


def export_torchvision(model: VGG, path) -> Path:
    """Write `model` as a torchvision-loadable state dict (``.pth``, or ``.safetensors``)."""
    if model.config not in TORCHVISION_NAMES:
        raise VGGError(f"torchvision has no counterpart of config {model.config}; exportable: "
                       + ", ".join(f"{k} ({v})" for k, v in TORCHVISION_NAMES.items()))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        from safetensors.torch import save_file
        return atomic_write(path, lambda tmp: save_file(state, tmp))
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
