"""Localisation (Appendix A): boxes and their parameterisation, box data, OverFeat-style
greedy merging, the ILSVRC localisation error and a contact sheet. Pure functions: the
localisation net, its training and the CLI build on these. Importing the package registers box
regression (``objective.py``) with the one training loop."""

from ..data.boxfiles import (
    BoxImage,
    BoxSource,
    read_box_csv,
    read_voc_annotations,
    split_by_image,
    write_box_csv,
)
from .boxes import (
    area,
    as_boxes,
    boxes_through_transform,
    choose_target,
    clip,
    decode,
    dense_windows,
    encode,
    iou,
    rescale_factors,
    training_target,
    window_to_image,
)
from .merge import Merged, greedy_merge, match_score, merge_per_class, rank_guesses
from .metrics import gt_class_box_error, localisation_correct, localisation_error
from .objective import BoxRegression, open_boxes

__all__ = [
    "BoxImage",
    "BoxSource",
    "read_box_csv",
    "read_voc_annotations",
    "split_by_image",
    "write_box_csv",
    "area",
    "as_boxes",
    "boxes_through_transform",
    "choose_target",
    "clip",
    "decode",
    "dense_windows",
    "encode",
    "iou",
    "rescale_factors",
    "training_target",
    "window_to_image",
    "Merged",
    "greedy_merge",
    "match_score",
    "merge_per_class",
    "rank_guesses",
    "gt_class_box_error",
    "localisation_correct",
    "localisation_error",
    "BoxRegression",
    "open_boxes",
]
