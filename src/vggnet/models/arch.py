"""The names of Table 1's nets and the checks of their arguments: what a weight file's header, a
recipe and ``create_model`` are each held to. An architecture is named by its Table 1 letter
(``D``) or by the name users know from torchvision (``vgg16``; ``vgg16_bn`` is D with batch
normalisation): the two name the same net."""

from __future__ import annotations

from ..errors import VGGError, unknown
from .configs import TABLE1, TORCHVISION_NAMES

HEADS = ("classifier", "scr", "pcr")  # class scores; single-class / per-class box regression (App. A)

ALIASES = {name: letter for letter, name in TORCHVISION_NAMES.items()}
ALIASES.update({f"{name}_bn": letter for name, letter in list(ALIASES.items())})


def list_models(aliases: bool = False) -> list[str]:
    """The Table 1 configurations; with `aliases`, also the torchvision names (vgg11 ... vgg19_bn)."""
    return list(TABLE1) + (list(ALIASES) if aliases else [])


def resolve_arch(name: str) -> tuple[str, bool | None]:
    """A Table 1 letter or a torchvision name -> (letter, batch norm): torchvision's names say
    whether the net has batch norm (``vgg16``: no, ``vgg16_bn``: yes); a letter leaves it open (None)."""
    if name in TABLE1:
        return name, None
    if name in ALIASES:
        return ALIASES[name], name.endswith("_bn")
    raise unknown("model", name, list_models(aliases=True))


def check_model_args(arch, num_classes, width, fc_dim, crop_size, dropout, head="classifier") -> None:
    if arch not in TABLE1:
        resolve_arch(arch)
    if head not in HEADS:
        raise unknown("head", head, HEADS)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise VGGError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not width > 0:
        raise VGGError(f"width must be > 0, got {width!r}")
    if not isinstance(fc_dim, int) or fc_dim < 1:
        raise VGGError(f"fc_dim must be a positive integer, got {fc_dim!r}")
    if not 0 <= dropout < 1:
        raise VGGError(f"dropout must be in [0, 1), got {dropout!r}")
    check_crop_size(crop_size)


def check_crop_size(crop_size: int) -> int:
    if not isinstance(crop_size, int) or crop_size < 32 or crop_size % 32:
        raise VGGError(f"crop size must be a multiple of 32 and >= 32 (five 2x2 poolings), got {crop_size}")
    return crop_size
