"""``vggnet convert``: weights between formats, with their meaning intact.

A weight file is only usable with the input it was trained on (channel order, value range, mean,
std) and with its class names. Both travel in every direction:

- into our format (torchvision ``.pth``/``.safetensors``, the original Caffe ``.caffemodel``): the
  format's preprocessing is recorded in the metadata (torchvision's RGB 0-1 mean/std; Caffe's BGR
  0-255 mean pixel), and the class names come from ``--classes``, from a ``NAME.classes.txt``
  beside the file, or are the ImageNet-1k wnids for a 1000-output net;
- out to torchvision's format, which has no field for them: the preprocessing is folded into
  conv1_1 so that the exported net takes torchvision's input (the change it makes, which comes
  from the one-pixel border only, is measured on random images and must stay below
  ``FOLD_TOLERANCE``, else the export is refused); the class names go to ``NAME.classes.txt``.
"""

from __future__ import annotations

from pathlib import Path

from ..data.preprocessing import PRESETS
from ..errors import VGGError
from ..fileio import claim_output
from .caffe import import_caffe
from .weights import (
    classes_file,
    export_torchvision,
    fold_check,
    fold_preprocessing,
    import_torchvision,
    is_vggnet_file,
    load_model,
    read_class_names,
    save_weights,
)

FOLD_TOLERANCE = 0.01  # largest change of a soft-max output accepted from folding (border effect)


def output_kind(to: str, dst: Path) -> str:
    if to == "vggnet":
        return "vggnet weights"
    return "safetensors" if dst.suffix == ".safetensors" else "PyTorch state dict"


def to_torchvision(src, dst, force: bool = False) -> dict:
    model, meta = load_model(src)
    dst = claim_output(dst, output_kind("torchvision", Path(dst)), force)
    claim_output(classes_file(dst), "text", force)
    target, note = PRESETS["torchvision"], None
    if not meta.preprocessing.same_input(target):
        folded = fold_preprocessing(model, meta.preprocessing, target)
        change = fold_check(model, folded, meta.preprocessing, target)
        if change > FOLD_TOLERANCE:
            raise VGGError(
                f"{src} expects {meta.preprocessing.describe()}; folded into conv1_1 for torchvision's "
                f"input it would change soft-max outputs by up to {change:.3f} (border effect); keep "
                f"it in vggnet's format instead"
            )
        model, note = (
            folded,
            f"{meta.preprocessing.describe()} folded into conv1_1 (largest change of a soft-max "
            f"output on random images: {change:.1e})",
        )
    export_torchvision(model, dst, classes=meta.classes)
    return dict(
        dst=str(dst),
        classes_file=str(classes_file(dst)),
        arch=model.arch,
        batch_norm=model.spec.batch_norm,
        folded=note,
    )


def to_vggnet(
    src, dst, arch: str | None = None, classes_path=None, prototxt=None, force: bool = False
) -> dict:
    src = Path(src)
    dst = claim_output(dst, "vggnet weights", force)
    classes = read_class_names(classes_path) if classes_path else None
    if src.suffix.lower() == ".caffemodel":
        model, meta = import_caffe(src, prototxt=prototxt, classes=classes)
    else:
        if prototxt:
            raise VGGError("--prototxt goes with a .caffemodel file")
        model, meta = import_torchvision(src, arch=arch, classes=classes)
    save_weights(dst, model, meta)
    return dict(
        dst=str(dst),
        arch=model.arch,
        classes=len(meta.classes),
        preprocessing=meta.preprocessing.describe(),
        source=meta.source.get("kind") if meta.source else "?",
    )


def convert(src, dst, to: str | None = None, **options) -> dict:
    """`to`: "vggnet" or "torchvision"; by default the other format than `src`'s."""
    if not Path(src).is_file():
        raise VGGError(f"weights file not found: {src}")
    to = to or ("torchvision" if is_vggnet_file(src) else "vggnet")
    if to == "torchvision":
        return dict(to_torchvision(src, dst, options.get("force", False)), to=to)
    return dict(to_vggnet(src, dst, **options), to=to)
