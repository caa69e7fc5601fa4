"""The model registry: ``create_model(arch, ...)``, ``list_models()`` and the zoo's figures
(parameters and multiply-accumulates, Table 2).

An architecture is named by its Table 1 letter (``D``) or by the name users know from
torchvision (``vgg16``; ``vgg16_bn`` is D with batch normalisation): the two name the same net."""
from __future__ import annotations

from ..errors import VGGError, unknown
from .configs import TABLE1, TORCHVISION_NAMES, parse_config, weight_layers
from .meta import HEADS, ArchSpec
from .vgg import VGG, check_crop_size, scaled_width


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


def create_model(arch: str, num_classes: int | None = None, *, width: float = 1.0, fc_dim: int = 4096,
                 crop_size: int = 224, dropout: float = 0.5, batch_norm: bool = False,
                 head: str = "classifier", weights=None) -> VGG:
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
    letter, bn = resolve_arch(arch)
    num_classes = 1000 if num_classes is None else num_classes
    check_model_args(letter, num_classes, width, fc_dim, crop_size, dropout, head)
    return VGG(letter, num_classes, width=width, fc_dim=fc_dim, crop_size=crop_size, dropout=dropout,
               batch_norm=batch_norm if bn is None else bn, head=head)


def _with_weights(arch: str, path, batch_norm: bool) -> VGG:
    from pathlib import Path

    from .weights import import_torchvision, is_vggnet_file, load_model
    letter, bn = resolve_arch(arch)
    if is_vggnet_file(path):
        model, _ = load_model(path)
    elif Path(path).suffix.lower() == ".caffemodel":
        from .caffe import import_caffe
        model, _ = import_caffe(path)
    else:
        model, _ = import_torchvision(path)
    want_bn = bn if bn is not None else (True if batch_norm else model.spec.batch_norm)
    if model.arch != letter or model.spec.batch_norm != want_bn:
        found = f"{model.arch}{' with batch norm' if model.spec.batch_norm else ''}"
        raise VGGError(f"{path} holds config {found}, not {arch}")
    return model


def model_from_spec(spec: ArchSpec) -> VGG:
    return create_model(**spec.kwargs())


def complexity(arch: str, num_classes: int = 1000, *, width: float = 1.0, fc_dim: int = 4096,
               crop_size: int = 224, batch_norm: bool = False) -> dict:
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
            params += layer.kernel ** 2 * channels * out + out + (2 * out if batch_norm else 0)
            macs += side * side * layer.kernel ** 2 * channels * out
            channels = out
        side //= 2
    for n_in, n_out in ((channels * side * side, fc_dim), (fc_dim, fc_dim), (fc_dim, num_classes)):
        params += n_in * n_out + n_out
        macs += n_in * n_out
    return dict(arch=arch, weight_layers=weight_layers(arch), params=params, macs=macs)
