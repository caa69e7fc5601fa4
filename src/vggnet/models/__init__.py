"""The networks of Table 1: registry, module, initialisation and weights I/O."""
from .configs import TABLE1, TORCHVISION_NAMES, WARM_START_LAYERS, parse_config, weight_layers
from .init import INIT_SCHEMES, init_weights, warm_start
from .vgg import VGG, check_crop_size
from .weights import (PREPROCESSING, check_state_dict, export_torchvision, import_torchvision, load_model,
                      read_weights, save_weights)
from .zoo import complexity, create_model, list_models

__all__ = ["TABLE1", "TORCHVISION_NAMES", "WARM_START_LAYERS", "parse_config", "weight_layers", "INIT_SCHEMES",
           "init_weights", "warm_start", "VGG", "check_crop_size", "PREPROCESSING", "check_state_dict",
           "export_torchvision", "import_torchvision", "load_model", "read_weights", "save_weights",
           "complexity", "create_model", "list_models"]
