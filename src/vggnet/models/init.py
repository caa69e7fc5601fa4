"""Initialisation (§3.1): Gaussian, Glorot, and warm start of a deeper net from a trained net A."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import VGGError, unknown
from .configs import WARM_START_LAYERS
from .vgg import VGG

INIT_SCHEMES = ("gaussian", "glorot")


@torch.no_grad()
def init_weights(model: VGG, scheme: str = "gaussian", std: float = 0.01) -> VGG:
    """Re-initialise every weight layer: ``gaussian`` draws weights from N(0, std) (the released
    models used std 0.01; the text's "10^-2 variance" is ambiguous), ``glorot`` uses
    Glorot & Bengio's uniform rule, which the paper notes trains deep nets without pre-training.
    Biases start at 0; BN at identity."""
    if scheme not in INIT_SCHEMES:
        raise unknown("init scheme", scheme, INIT_SCHEMES)
    if not std > 0:
        raise VGGError(f"init std must be > 0, got {std}")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "gaussian":
                nn.init.normal_(module.weight, 0.0, std)
            else:
                nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
    return model


def _bn_after(model: VGG, name: str):
    """The BN layer that follows conv `name`, if the model has one."""
    if name not in model.layer_index:
        return None
    following = model.features[model.layer_index[name] + 1]
    return following if isinstance(following, nn.BatchNorm2d) else None


@torch.no_grad()
def warm_start(target: VGG, source: VGG, layers=None) -> list[str]:
    """Copy weight layers from `source` into `target`, matched by paper name.

    By default the layers of §3.1: a trained net A's conv1_1, conv2_1, conv3_1, conv3_2 and its
    three FC layers; the rest of `target` keeps its (random) initialisation. ``layers="all"`` copies
    every layer, for continuing the same net at another scale (S=384 from S=256); ``"all-but-head"``
    every layer but fc8, which keeps its random initialisation (a new head). Every layer is
    checked before anything is copied, so a refused warm start leaves `target` untouched.
    Returns the names of the copied layers.
    """
    src, dst = source.weight_layers(), target.weight_layers()
    if layers == "all":
        layers = list(dst)
    elif layers == "all-but-head":  # a new last layer (another class count, a box head): random
        layers = [name for name in dst if name != "fc8"]
    layers = list(WARM_START_LAYERS if layers is None else layers)
    for name in layers:
        if name not in src or name not in dst:
            where, net = ("source", source) if name not in src else ("target", target)
            raise VGGError(f"cannot warm-start layer {name}: the {where} net ({net.arch}) has no such layer")
        for attr in ("weight", "bias"):
            a, b = getattr(src[name], attr), getattr(dst[name], attr)
            if a.shape != b.shape:
                raise VGGError(
                    f"cannot warm-start layer {name}: source {attr} has shape {tuple(a.shape)}, "
                    f"target has {tuple(b.shape)}" + _shape_hint(source, target)
                )
    for name in layers:
        dst[name].weight.copy_(src[name].weight)
        dst[name].bias.copy_(src[name].bias)
        bn_src, bn_dst = _bn_after(source, name), _bn_after(target, name)
        if bn_src is not None and bn_dst is not None:
            bn_dst.load_state_dict(bn_src.state_dict())
    return layers


def _shape_hint(source, target) -> str:
    """What to change when the nets differ in width or FC size (a narrow net warm-starting a full one)."""
    pairs = (
        ("width", source.spec.width, target.spec.width),
        ("fc-dim", source.spec.fc_dim, target.spec.fc_dim),
    )
    changes = [f"--{flag} {value:g}" for flag, value, mine in pairs if value != mine]
    if not changes:
        return ""
    return (
        f"; the source net has width x{source.spec.width:g} and FC {source.spec.fc_dim}: build the "
        f"target with the same ({' '.join(changes)})"
    )
