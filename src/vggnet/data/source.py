"""The one seam between storage and the rest: a :class:`Source` is an indexable, labelled image set
that yields decoded images. Folders and label files (``datasets.py``) and tar shards
(``shards.py``) are sources; loaders, statistics and transforms see decoded images only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import VGGError
from .images import load_rgb


@dataclass
class Source:
    """A labelled image set, the one seam between storage and the rest: ``samples`` are (name,
    class index) pairs, where a name is the image's path, or what a storage format's ``reader``
    (picklable: loader workers call it) decodes; ``read(i)`` is the decoded image. Loaders,
    statistics and transforms see decoded images only, so a new storage format is a reader and
    a function that returns a Source (tar shards: ``shards.py``)."""

    samples: list[tuple[str, int]]
    classes: list[str]
    root: str
    kind: str = "folder"
    ids: list[str] = field(default_factory=list)  # stable image ids (paths relative to root)
    reader: Callable | None = None  # (name, min_side) -> RGB image; None: the name is a file path

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int, min_side: int | None = None) -> Image.Image:
        """Image `index` decoded (at about `min_side`, see :func:`images.decode_rgb`); an
        :class:`ImageReadError` names it when it cannot be."""
        return (self.reader or load_rgb)(self.samples[index][0], min_side)

    def subset(self, indices) -> "Source":
        """The images `indices`, in that order (the same class: a subclass keeps its own fields)."""
        indices = list(indices)
        return replace(self, samples=[self.samples[i] for i in indices], ids=[self.ids[i] for i in indices])


def split_holdout(source: Source, fraction: float, seed: int = 0) -> tuple[Source, Source]:
    """Split off a deterministic, class-stratified held-out part (for validation)."""

    if not 0 < fraction < 1:
        raise VGGError(f"held-out fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(source.samples):
        by_class.setdefault(label, []).append(i)
    held = []
    for label in sorted(by_class):
        members = by_class[label]
        k = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        held.extend(rng.choice(members, size=k, replace=False).tolist())
    held_set = set(held)
    train = [i for i in range(len(source)) if i not in held_set]
    if not held or not train:
        raise VGGError(f"cannot hold out {fraction:.0%} of {len(source)} images")
    return source.subset(train), source.subset(sorted(held))
