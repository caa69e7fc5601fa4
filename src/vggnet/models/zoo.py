"""The model registry: ``create_model(arch, ..., weights=...)``, ``list_models()`` and the zoo's
figures (parameters and multiply-accumulates, Table 2). The names and the argument checks are in
``arch.py``; a net with weights comes from any of the formats ``weights.py`` and ``caffe.py`` read."""

from __future__ import annotations

from pathlib import Path

from ..errors import VGGError
from .arch import check_model_args, list_models, resolve_arch
from .caffe import import_caffe
from .configs import parse_config, weight_layers
from .meta import ArchSpec
from .vgg import VGG, model_from_spec, scaled_width
from .weights import import_torchvision, is_vggnet_file, load_model

__all__ = ["create_model", "list_models", "resolve_arch", "complexity"]


def create_model(
    arch: str,
    num_classes: int | None = None,
    *,
    width: float = 1.0,
    fc_dim: int = 4096,
    crop_size: int = 224,
    dropout: float = 0.5,
    batch_norm: bool = False,
    head: str = "classifier",
    weights=None,
) -> VGG:
    """Build configuration `arch` of Table 1 ("A", "A-LRN", "B", "C", "D", "E", "B-5x5").

    ``width`` scales the conv channels and ``fc_dim`` the two hidden FC layers, so that tests and
    CPU demos can use tiny nets; at the defaults the nets are the paper's. ``batch_norm`` adds BN
    after every conv (torchvision's ``vgg*_bn``; not in the paper). ``head`` is what fc8 predicts:
    class scores, or a box regressor of Appendix A (``scr``: 4 outputs, ``pcr``: 4 per class).
    Weights are PyTorch's default initialisation (call :func:`vggnet.models.init_weights` for the
    paper's), or those of ``weights``: a vggnet weight file, a torchvision ``.pth`` or a Caffe
    ``.caffemodel``, whose architecture must be `arch` (the file's own class count is used).
    """
    if weights is not None:
        return _with_weights(arch, weights, batch_norm)
    return model_from_spec(
        ArchSpec(
            arch,
            1000 if num_classes is None else num_classes,
            width,
            fc_dim,
            crop_size,
            dropout,
            batch_norm,
            head,
        )
    )


def _with_weights(arch: str, path, batch_norm: bool) -> VGG:
    letter, bn = resolve_arch(arch)
    if is_vggnet_file(path):
        model, _ = load_model(path)
    elif Path(path).suffix.lower() == ".caffemodel":
        model, _ = import_caffe(path)
    else:
        model, _ = import_torchvision(path)
    want_bn = bn if bn is not None else (True if batch_norm else model.spec.batch_norm)
    if model.arch != letter or model.spec.batch_norm != want_bn:
        found = f"{model.arch}{' with batch norm' if model.spec.batch_norm else ''}"
        raise VGGError(f"{path} holds config {found}, not {arch}")
    return model


def complexity(
    arch: str,
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    fc_dim: int = 4096,
    crop_size: int = 224,
    batch_norm: bool = False,
) -> dict:
    """Parameters and multiply-accumulates of one forward pass on a crop, computed from the table
    (no model is built, so this is cheap even for the full-size nets)."""
    check_model_args(arch, num_classes, width, fc_dim, crop_size, 0.0)
    params = macs = 0
    channels, side = 3, crop_size
    for stage in parse_config(arch):
        for layer in stage:
            if not layer.is_conv:
                continue
            out = scaled_width(layer.out_channels, width)
            params += layer.kernel**2 * channels * out + out + (2 * out if batch_norm else 0)
            macs += side * side * layer.kernel**2 * channels * out
            channels = out
        side //= 2
    for n_in, n_out in ((channels * side * side, fc_dim), (fc_dim, fc_dim), (fc_dim, num_classes)):
        params += n_in * n_out + n_out
        macs += n_in * n_out
    return dict(arch=arch, weight_layers=weight_layers(arch), params=params, macs=macs)
