"""The one seam between storage and the rest: a :class:`Source` is an indexable, labelled image set
that yields decoded images. Folders and label files (``datasets.py``) and tar shards
(``shards.py``) are sources; loaders, statistics and transforms see decoded images only."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from PIL import Image

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
