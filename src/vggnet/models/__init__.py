"""The networks of Table 1: registry, module, metadata, initialisation and weights I/O."""

from ..data.preprocessing import PRESETS, Preprocessing
from .arch import check_crop_size, list_models, resolve_arch
from .configs import TABLE1, TORCHVISION_NAMES, WARM_START_LAYERS, parse_config, weight_layers
from .init import INIT_SCHEMES, init_weights, warm_start
from .meta import ArchSpec, TrainInfo, WeightsMeta
from .transforms import EvalTransform, create_transform
from .vgg import VGG, model_from_spec
from .weights import (
    build_checked,
    check_state_dict,
    export_torchvision,
    import_torchvision,
    is_vggnet_file,
    load_model,
    read_meta,
    read_weights,
    save_weights,
)
from .zoo import complexity, create_model

__all__ = [
    "TABLE1",
    "TORCHVISION_NAMES",
    "WARM_START_LAYERS",
    "parse_config",
    "weight_layers",
    "INIT_SCHEMES",
    "init_weights",
    "warm_start",
    "PRESETS",
    "ArchSpec",
    "Preprocessing",
    "TrainInfo",
    "WeightsMeta",
    "VGG",
    "check_crop_size",
    "build_checked",
    "check_state_dict",
    "export_torchvision",
    "import_torchvision",
    "is_vggnet_file",
    "load_model",
    "read_meta",
    "read_weights",
    "save_weights",
    "complexity",
    "create_model",
    "list_models",
    "model_from_spec",
    "resolve_arch",
    "EvalTransform",
    "create_transform",
]
