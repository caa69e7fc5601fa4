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


def _hit(iou_value, threshold: float):
    return iou_value >= threshold - _IOU_SLACK


def box_hits(box, gt_boxes, threshold: float = IOU_THRESHOLD) -> bool:
    """Whether one box localises: IoU >= threshold with some ground-truth box."""
    return bool(_hit(best_iou(box, gt_boxes), threshold))


def localisation_correct(
    guesses, gt_label: int, gt_boxes, gt_box_classes=None, k: int = 5, threshold: float = IOU_THRESHOLD
) -> bool:
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


def gt_class_box_ious(pred_boxes, gt_boxes_list, extents=None) -> np.ndarray:
    """Test protocol 1's measure, per image: the IoU of the box predicted for the ground-truth class,
    clipped to its image (a box cannot localise beyond the picture), with the best-overlapping
    ground-truth box of that class (0 when there is none).

    `pred_boxes`: (n, 4); `gt_boxes_list`: n arrays of that image's boxes of its class
    (``BoxImage.gt_boxes()``); `extents`: (n, 4), each image's own box ``(x0, y0, x1, y1)`` in the
    boxes' frame (``(0, 0, W, H)`` in image pixels; the rescaled image seen from the centre crop
    during training), or None for boxes already inside their image. IoU is the same in any frame
    that differs by a shift and a per-axis scale, so validation during training (crop pixels) and
    `vggnet loc evaluate` (image pixels) measure alike.
    """
    pred = as_boxes(pred_boxes)
    if len(pred) != len(gt_boxes_list):
        raise ValueError(f"{len(pred)} predicted boxes for {len(gt_boxes_list)} images")
    if extents is not None:
        ext = as_boxes(extents)
        pred = np.clip(pred, ext[:, [0, 1, 0, 1]], ext[:, [2, 3, 2, 3]])
    return np.array([best_iou(p, gt) for p, gt in zip(pred, gt_boxes_list)], dtype=np.float64)


def gt_class_box_misses(
    pred_boxes, gt_boxes_list, extents=None, threshold: float = IOU_THRESHOLD
) -> np.ndarray:
    """Test protocol 1's check (Appendix A, Table 8), per image: True where the clipped box of the
    ground-truth class misses (:func:`gt_class_box_ious` below the threshold, with the slack of
    :func:`box_hits`). `vggnet loc evaluate` and the per-epoch validation of `vggnet loc train`
    both count errors here."""
    return ~_hit(gt_class_box_ious(pred_boxes, gt_boxes_list, extents), threshold)


def gt_class_box_error(pred_boxes, gt_boxes_list, extents=None, threshold: float = IOU_THRESHOLD) -> float:
    """Test protocol 1 (Appendix A, Table 8): one predicted box per image for its ground-truth
    class (classification errors excluded); the error in percent is the share of images whose box
    misses every ground-truth box of that class (:func:`gt_class_box_misses`)."""
    if len(as_boxes(pred_boxes)) == 0 and len(gt_boxes_list) == 0:
        raise VGGError("localisation error of an empty data set")
    return 100.0 * float(gt_class_box_misses(pred_boxes, gt_boxes_list, extents, threshold).mean())
