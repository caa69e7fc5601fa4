"""The model registry: ``create_model(arch, ...)``, ``list_models()`` and the zoo's figures
(parameters and multiply-accumulates, Table 2)."""
from __future__ import annotations

from ..errors import VGGError, unknown
from .configs import TABLE1, parse_config, weight_layers
from .meta import HEADS, ArchSpec
from .vgg import VGG, check_crop_size, scaled_width


def list_models() -> list[str]:
    return list(TABLE1)


def check_model_args(arch, num_classes, width, fc_dim, crop_size, dropout, head="classifier") -> None:
    if arch not in TABLE1:
        raise unknown("model", arch, list_models())
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


def create_model(arch: str, num_classes: int = 1000, *, width: float = 1.0, fc_dim: int = 4096,
                 crop_size: int = 224, dropout: float = 0.5, batch_norm: bool = False,
                 head: str = "classifier") -> VGG:
    """Build configuration `arch` of Table 1 ("A", "A-LRN", "B", "C", "D", "E", "B-5x5").

    ``width`` scales the conv channels and ``fc_dim`` the two hidden FC layers, so that tests and
    CPU demos can use tiny nets; at the defaults the nets are the paper's. ``batch_norm`` adds BN
    after every conv (torchvision's ``vgg*_bn``; not in the paper). ``head`` is what fc8 predicts:
    class scores, or a box regressor of Appendix A (``scr``: 4 outputs, ``pcr``: 4 per class).
    Weights are PyTorch's default initialisation: call :func:`vggnet.models.init_weights` for the paper's.
    """
    check_model_args(arch, num_classes, width, fc_dim, crop_size, dropout, head)
    return VGG(arch, num_classes, width=width, fc_dim=fc_dim, crop_size=crop_size, dropout=dropout,
               batch_norm=batch_norm, head=head)


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
