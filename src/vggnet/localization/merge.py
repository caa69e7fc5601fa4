"""OverFeat's greedy merging of box predictions, as Appendix A uses it (decision).

For one class, the boxes predicted at every location, scale and net are merged greedily: the pair
of current boxes with the smallest match score is replaced by their merge, until the smallest
match score reaches the threshold t. The paper (and OverFeat, Sermanet et al. 2014 §4.3) give
neither the exact match score nor t; we decide:

- ``match(a, b) = |centre(a) - centre(b)| / size(a, b) - IoU(a, b)``, where
  ``size(a, b) = ((w_a + h_a) / 2 + (w_b + h_b) / 2) / 2`` is the mean of the two boxes' sizes
  (a box's size being the mean of its width and height). It is scale-free, lies in [-1, inf),
  and is -1 for identical boxes;
- merge while the smallest match score is < t (t is a setting, chosen on held-out data);
- a merged box is the mean of all the raw boxes it absorbed (not the mean of two means, which
  would weight late arrivals more), and its score is the sum of their scores (the class scores of
  the locations that predicted them), so a box many locations agree on ranks high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import VGGError
from .boxes import as_boxes

# The merge holds an N x N float64 matrix: 10,000 boxes are 800 MB. Dense outputs give a few
# dozen boxes per class per scale and net, so more than this means the caller forgot to keep
# only the top-k classes.
MAX_MERGE_BOXES = 10_000
_BLOCK = 256  # rows of the match matrix computed at once


@dataclass
class Merged:
    """The merged boxes of one class, best first: ``boxes`` (K, 4), ``scores`` (K,) summed raw
    scores, ``counts`` (K,) how many raw boxes each absorbed."""

    boxes: np.ndarray
    scores: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)


def match_score(a, b) -> np.ndarray:
    """Pairwise match scores (N, M): centre distance / mean box size - IoU (module docstring)."""
    return _match(_Stats(as_boxes(a)), _Stats(as_boxes(b)))


class _Stats:
    """What the match score needs of a set of boxes, computed once."""

    def __init__(self, boxes: np.ndarray):
        self.boxes = boxes
        wh = np.maximum(boxes[:, 2:] - boxes[:, :2], 0.0)
        self.centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
        self.size = wh.mean(axis=1)  # (w + h) / 2
        self.area = wh.prod(axis=1)

    def take(self, rows) -> "_Stats":
        out = object.__new__(_Stats)
        out.boxes, out.centre, out.size, out.area = (
            v[rows] for v in (self.boxes, self.centre, self.size, self.area)
        )
        return out

    def update(self, i: int, box: np.ndarray) -> None:
        one = _Stats(box[None])
        for name in ("boxes", "centre", "size", "area"):
            getattr(self, name)[i] = getattr(one, name)[0]


def _match(q: _Stats, r: _Stats) -> np.ndarray:
    d = q.centre[:, None, :] - r.centre[None, :, :]
    dist = np.sqrt((d * d).sum(axis=2))
    size = (q.size[:, None] + r.size[None, :]) / 2.0
    # Two points (zero-size boxes) at the same place still match (0); apart, they never do.
    ratio = np.divide(dist, size, out=np.where(dist > 0, np.inf, 0.0), where=size > 0)
    qb, rb = q.boxes, r.boxes
    iw = np.minimum(qb[:, None, 2], rb[None, :, 2]) - np.maximum(qb[:, None, 0], rb[None, :, 0])
    ih = np.minimum(qb[:, None, 3], rb[None, :, 3]) - np.maximum(qb[:, None, 1], rb[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = q.area[:, None] + r.area[None, :] - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return ratio - overlap


def greedy_merge(boxes, scores, t: float, max_boxes: int = MAX_MERGE_BOXES) -> Merged:
    """Greedily merge one class's raw boxes (N, 4) with scores (N,) at threshold `t`.

    Cost: O(N^2) memory (the match matrix, built in blocks of rows so that temporaries stay
    small) and O(N^2) time to build it; each merge then costs O(N) (one new row, and an O(N)
    rescan of each row whose best partner was one of the merged pair -- typically few), so a few
    thousand boxes merge in a second or two on one core. Ties go to the lowest index: the result is
    deterministic.
    """
    b = as_boxes(boxes)
    s = np.asarray(
        scores.detach().cpu().numpy() if hasattr(scores, "detach") else scores, dtype=np.float64
    ).reshape(-1)
    n = len(b)
    if len(s) != n:
        raise ValueError(f"{n} boxes but {len(s)} scores")
    if n > max_boxes:
        raise VGGError(
            f"greedy merge of {n:,} boxes would need an {n:,} x {n:,} matrix "
            f"({n * n * 8 / 1e9:.1f} GB); at most {max_boxes:,} boxes per class -- keep the "
            f"top-k classes, or fewer scales"
        )
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise VGGError("greedy merge: boxes and scores must be finite")
    if n == 0:
        return Merged(b, s, np.zeros(0, dtype=np.int64))

    sums = b.copy()  # per cluster: the sum of its raw boxes, so the mean stays exact
    counts = np.ones(n, dtype=np.int64)
    total = s.copy()
    alive = np.ones(n, dtype=bool)
    stats = _Stats(b.copy())  # of the current means
    m = np.empty((n, n))
    for lo in range(0, n, _BLOCK):
        m[lo : lo + _BLOCK] = _match(stats.take(slice(lo, lo + _BLOCK)), stats)
    np.fill_diagonal(m, np.inf)
    row_min, row_arg = m.min(axis=1), m.argmin(axis=1)
    for _ in range(n - 1):
        i = int(np.argmin(row_min))
        if not row_min[i] < t:
            break
        j = int(row_arg[i])
        sums[i] += sums[j]
        counts[i] += counts[j]
        total[i] += total[j]
        alive[j] = False
        m[j, :] = np.inf
        m[:, j] = np.inf
        row_min[j] = np.inf
        stats.update(i, sums[i] / counts[i])
        row = _match(stats.take(slice(i, i + 1)), stats)[0]
        row[~alive] = np.inf
        row[i] = np.inf
        m[i, :] = row
        m[:, i] = row
        row_min[i], row_arg[i] = row.min(), row.argmin()
        # Rows whose best partner was i or j must be rescanned; every other row keeps its best
        # partner unless the new cluster i beats it.
        stale = np.flatnonzero(alive & ((row_arg == i) | (row_arg == j)))
        stale = stale[stale != i]
        if len(stale):
            row_min[stale], row_arg[stale] = m[stale].min(axis=1), m[stale].argmin(axis=1)
        better = alive & (row < row_min)
        better[i] = False
        row_min[better], row_arg[better] = row[better], i
    keep = np.flatnonzero(alive)
    order = keep[np.argsort(-total[keep], kind="stable")]
    return Merged(sums[order] / counts[order, None], total[order], counts[order])


def merge_per_class(per_class, t: float, max_boxes: int = MAX_MERGE_BOXES) -> dict[int, Merged]:
    """Greedy merge for several classes: ``{class: (boxes (N, 4), scores (N,))}`` ->
    ``{class: Merged}``. The union of several nets' or scales' boxes is merged by concatenating
    them per class before the call (Appendix A)."""
    return {int(c): greedy_merge(bx, sc, t, max_boxes) for c, (bx, sc) in per_class.items()}


def rank_guesses(
    merged_by_class: dict[int, Merged], class_scores, k: int = 5
) -> list[tuple[int, np.ndarray]]:
    """Up to k ``(class, box)`` guesses: the top-k classes by the *classification* net's image
    scores (Appendix A: ranked by the best classification system's scores), each with its
    best-scored merged box. A top-k class without merged boxes is left out (it cannot be guessed)."""
    if hasattr(class_scores, "detach"):
        class_scores = class_scores.detach().cpu().numpy()
    cs = np.asarray(class_scores, dtype=np.float64).reshape(-1)
    guesses = []
    for c in np.argsort(-cs, kind="stable")[:k]:
        m = merged_by_class.get(int(c))
        if m is not None and len(m):
            guesses.append((int(c), m.boxes[0].copy()))
    return guesses
