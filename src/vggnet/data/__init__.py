"""Data: sources (folders, label files, synthetic), robust decoding, the paper's transforms,
dataset statistics and multi-process loaders."""

from .datasets import file_list, image_folder, open_source, split_holdout
from .images import ImageReadError, load_rgb
from .loaders import TrainBatches, scaled_loader, train_loader
from .source import Source
from .stats import compute_stats, load_stats, save_stats
from .transforms import (
    Normalizer,
    Scale,
    TrainTransform,
    center_crop,
    check_scale,
    default_scales,
    grid_positions,
    multicrop,
    rescale,
)

__all__ = [
    "Source",
    "file_list",
    "image_folder",
    "open_source",
    "split_holdout",
    "ImageReadError",
    "load_rgb",
    "TrainBatches",
    "scaled_loader",
    "train_loader",
    "compute_stats",
    "load_stats",
    "save_stats",
    "Normalizer",
    "Scale",
    "TrainTransform",
    "center_crop",
    "check_scale",
    "default_scales",
    "grid_positions",
    "multicrop",
    "rescale",
]
