"""Train/test splits of the transfer protocol (Appendix B).

Caltech-101/256 style: several random splits, each with a fixed number of training images per
class and up to a number of test images per class from the rest (Caltech-101: 3 splits, 30 train,
up to 50 test; Caltech-256: 3 splits, 60 train, all the rest). Splits are drawn from (seed, split
number) alone and saved as JSON with the image ids they index, so a run can be repeated exactly
and a split file cannot silently be applied to other images.

Within the training part, 20% of the images are held out to choose the SVM's C (Appendix B):
stratified per class for single-label data, uniformly at random for multi-label data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import VGGError
from ..fileio import write_json

FORMAT = "vggnet-splits/1"


def _class_name(classes, c: int) -> str:
    return repr(classes[c]) if classes is not None and c < len(classes) else f"#{c}"


def random_splits(
    labels,
    n_splits: int,
    train_per_class: int,
    test_per_class: int | None = None,
    seed: int = 0,
    classes=None,
) -> list[dict]:
    """`n_splits` splits of single-label data: per class, `train_per_class` random training images
    and `test_per_class` (None: all the rest) random test images from the others. Every class
    must have at least ``train_per_class + 1`` images. Indices are sorted lists of ints."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise VGGError(
            "random splits are for single-label data (one class per image); multi-label "
            "data has a fixed train/test split"
        )
    if n_splits < 1 or train_per_class < 1 or (test_per_class is not None and test_per_class < 1):
        raise VGGError(
            f"need n_splits >= 1, train_per_class >= 1 and test_per_class >= 1 or all; got "
            f"{n_splits}, {train_per_class}, {test_per_class}"
        )
    n_classes = int(labels.max()) + 1 if labels.size else 0
    members = [np.flatnonzero(labels == c) for c in range(n_classes)]
    for c, m in enumerate(members):
        if len(m) < train_per_class + 1:
            raise VGGError(
                f"class {_class_name(classes, c)} has {len(m)} images; {train_per_class} "
                f"training images per class leave it none to test (need >= {train_per_class + 1})"
            )
    splits = []
    for s in range(n_splits):
        rng = np.random.default_rng([seed, s])
        train, test = [], []
        for m in members:
            perm = rng.permutation(m)
            train.extend(perm[:train_per_class].tolist())
            rest = perm[train_per_class:]
            test.extend((rest if test_per_class is None else rest[:test_per_class]).tolist())
        splits.append(dict(train=sorted(train), test=sorted(test)))
    return splits


def stratified_holdout(labels, fraction: float = 0.2, seed: int = 0) -> dict:
    """dict(fit, val) positions into `labels`: per class round(fraction * n_c) images for
    validation, at least one when the class has two or more (so every class is both fitted and
    validated), none when it has one."""
    if not 0 < fraction < 1:
        raise VGGError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 0x7A1])
    val = []
    for c in np.unique(labels):
        m = np.flatnonzero(labels == c)
        k = 0 if len(m) < 2 else min(len(m) - 1, max(1, int(round(fraction * len(m)))))
        val.extend(rng.permutation(m)[:k].tolist())
    val_set = set(val)
    return dict(fit=[i for i in range(len(labels)) if i not in val_set], val=sorted(val))


def random_holdout(n: int, fraction: float = 0.2, seed: int = 0) -> dict:
    """dict(fit, val): round(fraction * n) random positions for validation, the rest to fit."""
    if not 0 < fraction < 1:
        raise VGGError(f"held-out fraction must be in (0, 1), got {fraction}")
    k = int(round(fraction * n))
    if k < 1 or k >= n:
        raise VGGError(f"cannot hold out {fraction:.0%} of {n} images")
    perm = np.random.default_rng([seed, 0x7A2]).permutation(n)
    return dict(fit=sorted(perm[k:].tolist()), val=sorted(perm[:k].tolist()))


def ids_digest(ids) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def save_splits(path, splits: list[dict], ids, settings: dict | None = None, force: bool = False) -> Path:
    """Write `splits` (indices into `ids`) and the settings that drew them as JSON."""
    path = Path(path)
    if path.exists() and not force:
        raise VGGError(f"{path} already exists; refusing to overwrite it (choose another path, or force)")
    doc = dict(
        format=FORMAT,
        images=len(ids),
        ids_sha256=ids_digest(ids),
        settings=settings or {},
        splits=[dict(train=list(map(int, s["train"])), test=list(map(int, s["test"]))) for s in splits],
    )
    return write_json(path, doc)


def load_splits(path, ids=None) -> list[dict]:
    """Read a splits file; with `ids`, refuse it unless it was drawn over exactly these images."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"splits file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VGGError(f"{path}: not a splits file (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VGGError(f"{path}: not a splits file (format is not {FORMAT!r})")
    if ids is not None and (doc["images"] != len(ids) or doc["ids_sha256"] != ids_digest(ids)):
        raise VGGError(
            f"{path}: the splits were drawn over other images ({doc['images']} images) than these "
            f"features ({len(ids)} images, or another order)"
        )
    return [dict(train=list(s["train"]), test=list(s["test"])) for s in doc["splits"]]
