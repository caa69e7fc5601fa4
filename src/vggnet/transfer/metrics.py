"""Transfer metrics (Appendix B). Values are fractions in [0, 1].

Average precision of a ranking, from labels in {1, -1, 0} (0: the class is present only as
"difficult" objects; such an image is ignored for that class):

- ``voc07_ap``: the VOC-2007 devkit's 11-point interpolated AP, the mean over recall thresholds
  t = 0, 0.1, ..., 1 of the highest precision reached at any recall >= t (0 if none). The
  thresholds are the devkit's own ``0:0.1:1`` in double precision, as MATLAB's colon builds it:
  k * 0.1 from the start for the first half and 1 - k * 0.1 from the end for the second, the
  midpoint (0 + 1) / 2. That is k/10 for every k but 3, where it is 0.30000000000000004, so a
  recall of exactly 3/10 (= 0.3) does not count for t = 0.3 (numpy's ``arange(0, 1.1, 0.1)``,
  which some re-implementations use, differs at 0.6 and 0.7 too).
- ``auc_ap``: the VOC-2010+ devkits' area under the precision/recall curve, with precision first
  made monotone (each point takes the highest precision at any higher recall).

Decisions:
- Ties in score: images are ranked by descending score with a stable sort, so tied images keep
  their original (data set) order. Deterministic, but an evaluation should not rely on ties.
- Ignored (0) images are dropped before ranking; they would change neither precision nor recall.
- A class with no positive image has no AP. It is *reported*, not averaged: its AP is NaN, the
  mean is over the other classes, and ``no_positives`` lists it. A table built from such a mean
  must say over how many classes it is (``classes_scored``).

Mean class recall (Caltech-101/256): the mean over classes of the fraction of each class's test
images classified correctly, so classes with more test images do not weigh more.
"""

from __future__ import annotations

import numpy as np

from ..errors import VGGError


def matlab_colon(start: float, step: float, stop: float, intervals: int) -> np.ndarray:
    """MATLAB's ``start:step:stop`` with `intervals` steps, built symmetrically: ``start + k*step``
    for the first half, ``stop - k*step`` for the second, the midpoint ``(start + stop) / 2``."""
    out = np.empty(intervals + 1)
    k = np.arange(intervals // 2 + 1)
    out[k] = start + k * step
    out[intervals - k] = stop - k * step
    if intervals % 2 == 0:
        out[intervals // 2] = (start + stop) / 2
    return out


RECALL_POINTS = matlab_colon(0.0, 0.1, 1.0, 10)  # the VOC-2007 devkit's `for t=0:0.1:1`


def ranked_hits(scores, labels) -> np.ndarray:
    """Booleans, best score first: is the image at this rank a positive? (0-labelled images out)"""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise VGGError(f"{scores.size} scores for {labels.size} labels")
    bad = set(np.unique(labels).tolist()) - {1, -1, 0}
    if bad:
        raise VGGError(f"labels must be 1, -1 or 0 (ignored); got {sorted(bad)[:5]}")
    if np.isnan(scores).any():
        raise VGGError("scores contain NaN")
    keep = labels != 0
    scores, labels = scores[keep], labels[keep]
    order = np.argsort(-scores, kind="stable")
    return labels[order] > 0


def precision_recall(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each rank (one entry per non-ignored image)."""
    hits = ranked_hits(scores, labels)
    tp = np.cumsum(hits)
    n_pos = int(hits.sum())
    ranks = np.arange(1, hits.size + 1)
    recall = tp / n_pos if n_pos else np.full(hits.size, np.nan)
    return tp / ranks, recall


def _ap_11point(precision, recall) -> float:
    points = [precision[recall >= t].max() if (recall >= t).any() else 0.0 for t in RECALL_POINTS]
    return float(np.mean(points))


def _ap_area(precision, recall) -> float:
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # monotone: the best precision at this or higher recall
    step = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))


def _per_class(scores, labels, ap_one, name: str) -> dict:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if scores.ndim == 1:
        scores, labels = scores[:, None], labels[:, None]
    if scores.shape != labels.shape:
        raise VGGError(f"scores {scores.shape} and labels {labels.shape} differ in shape")
    per_class, no_pos = [], []
    for c in range(scores.shape[1]):
        precision, recall = precision_recall(scores[:, c], labels[:, c])  # validates the column too
        if (labels[:, c] > 0).any():
            per_class.append(ap_one(precision, recall))
        else:
            per_class.append(float("nan"))
            no_pos.append(c)
    scored = [v for v in per_class if not np.isnan(v)]
    return dict(
        kind=name,
        per_class=per_class,
        mean=float(np.mean(scored)) if scored else float("nan"),
        classes_scored=len(scored),
        no_positives=no_pos,
    )


def voc07_ap(scores, labels) -> dict:
    """11-point interpolated AP per class (columns) and their mean: dict(kind, per_class, mean,
    classes_scored, no_positives). 1-D inputs are one class."""
    return _per_class(scores, labels, _ap_11point, "VOC07 11-point")


def auc_ap(scores, labels) -> dict:
    """Area-under-curve AP per class and their mean (same dict as :func:`voc07_ap`)."""
    return _per_class(scores, labels, _ap_area, "area under curve")


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise VGGError(f"{y_true.size} labels for {y_pred.size} predictions")
    for name, y in (("labels", y_true), ("predictions", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise VGGError(f"{name} must be class indices in [0, {n_classes}), got {y.min()}..{y.max()}")
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def mean_class_recall(y_true, y_pred, n_classes: int) -> dict:
    """dict(mean, per_class, counts): per-class recall (NaN for a class with no test image, which
    is left out of the mean and listed in ``absent``)."""
    cm = confusion_matrix(y_true, y_pred, n_classes)
    counts = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, np.diag(cm) / np.maximum(counts, 1), np.nan)
    present = counts > 0
    if not present.any():
        raise VGGError("no test images: mean class recall is undefined")
    return dict(
        mean=float(recall[present].mean()),
        per_class=[float(v) for v in recall],
        counts=[int(v) for v in counts],
        absent=np.flatnonzero(~present).tolist(),
    )
