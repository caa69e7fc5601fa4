"""Localisation error, the ILSVRC rule (Appendix A, "Error").

A guess ``(class, box)`` is correct when the class is the image's ground-truth class and the box
overlaps a ground-truth box *of that class* with IoU >= 0.5 (the paper writes "above 0.5"; the
official devkit uses >= 0.5, and so do we). Top-k localisation error allows the first k guesses;
an image is an error when none of them is correct.
"""
from __future__ import annotations

import numpy as np

from ..errors import VGGError
from .boxes import as_boxes, iou

IOU_THRESHOLD = 0.5
# IoU is a ratio of float areas: a pair that is exactly 0.5 by hand may compute as 0.4999999999.
_IOU_SLACK = 1e-9


def best_iou(box, gt_boxes) -> float:
    """The largest IoU of one box with any of `gt_boxes` (0 when there are none)."""
    gt = as_boxes(gt_boxes)
    if len(gt) == 0:
        return 0.0
    if hasattr(box, "detach"):
        box = box.detach().cpu().numpy()
    return float(iou(np.asarray(box, dtype=np.float64).reshape(1, 4), gt).max())


def box_hits(box, gt_boxes, threshold: float = IOU_THRESHOLD) -> bool:
    """Whether one box localises: IoU >= threshold with some ground-truth box."""
    return best_iou(box, gt_boxes) >= threshold - _IOU_SLACK


def localisation_correct(guesses, gt_label: int, gt_boxes, gt_box_classes=None, k: int = 5,
                         threshold: float = IOU_THRESHOLD) -> bool:
    """Whether any of the first `k` guesses is correct.

    `guesses`: ``(class index, box (4,))`` pairs, best first (e.g. :func:`merge.rank_guesses`);
    `gt_boxes`: the image's ground-truth boxes (N, 4); `gt_box_classes`: their classes (N,), or
    None when they all belong to `gt_label`. Only boxes of the ground-truth class count.
    """
    gt = as_boxes(gt_boxes)
    if gt_box_classes is not None:
        gt = gt[np.asarray(gt_box_classes).reshape(-1) == gt_label]
    for cls, box in list(guesses)[:k]:
        if int(cls) == int(gt_label) and box_hits(box, gt, threshold):
            return True
    return False


def localisation_error(results, ks=(1, 5), threshold: float = IOU_THRESHOLD) -> dict[str, float]:
    """Top-k localisation error in percent over a data set, e.g. ``{"top1_loc_err": 34.1,
    "top5_loc_err": 26.7}``.

    `results`: one ``(guesses, gt_label, gt_boxes, gt_box_classes)`` tuple per image, the arguments
    of :func:`localisation_correct` (gt_box_classes may be None).
    """
    results = list(results)
    if not results:
        raise VGGError("localisation error of an empty data set")
    wrong = {k: 0 for k in ks}
    for guesses, gt_label, gt_boxes, gt_box_classes in results:
        for k in ks:
            wrong[k] += not localisation_correct(guesses, gt_label, gt_boxes, gt_box_classes, k, threshold)
    return {f"top{k}_loc_err": 100.0 * wrong[k] / len(results) for k in ks}


def gt_class_box_error(pred_boxes, gt_boxes_list, threshold: float = IOU_THRESHOLD) -> float:
    """Test protocol 1 (Appendix A, Table 8): one predicted box per image for its ground-truth
    class (classification errors excluded); the error in percent is the share of images whose box
    has IoU < threshold with every ground-truth box of that class.

    `pred_boxes`: (n, 4); `gt_boxes_list`: n arrays of that image's boxes of its class
    (``BoxImage.gt_boxes()``).
    """
    pred = as_boxes(pred_boxes)
    if len(pred) != len(gt_boxes_list):
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt_boxes_list)} images")
    if len(pred) == 0:
        raise VGGError("localisation error of an empty data set")
    wrong = sum(not box_hits(p, gt, threshold) for p, gt in zip(pred, gt_boxes_list))
    return 100.0 * wrong / len(pred)
