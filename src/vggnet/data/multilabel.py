"""Multi-label image sets (Appendix B's PASCAL VOC classification): a CSV with a ``path`` column
then one column per class holding the VOC devkit's values, 1 = present, -1 = absent, 0 = present
only as "difficult" objects (such an image is ignored for that class when VOC-2007 AP is computed).

A multi-label source is a :class:`~vggnet.data.source.Source` (so the test-time loaders read it
unchanged) with the (N, C) int8 label matrix as its annotation; ``open_source`` returns one for
such a CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import VGGError
from .source import Source

LABEL_VALUES = (1, -1, 0)


@dataclass
class MultiLabelSource(Source):
    """A :class:`Source` whose ``targets`` is the (N, C) int8 matrix of {1, -1, 0}. The per-sample
    label in ``samples`` is the image's row of ``targets`` as a tuple (informative only)."""

    targets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))

    def subset(self, indices) -> "MultiLabelSource":
        indices = list(indices)
        return replace(super().subset(indices), targets=self.targets[indices])


def _delimiter(path: Path) -> str:
    with open(path, newline="") as f:
        head = f.readline()
    return "\t" if "\t" in head and "," not in head else ","


def multilabel_csv(path, root=None) -> MultiLabelSource:
    """Read ``path,<class 1>,...,<class C>`` rows (header required; paths relative to `root`,
    default the file's folder). Every problem is reported with its ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"label file not found: {path}")
    root = Path(root) if root is not None else path.parent
    delimiter = _delimiter(path)
    rows, lines = [], []
    header = None
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
                continue
            row = [v.strip() for v in row]
            if header is None:
                if row[0].lower() not in ("path", "file", "filename", "image") or len(row) < 2:
                    raise VGGError(
                        f"{path}:{n}: expected a header 'path,<class>,<class>,...', got {row[:4]!r}"
                    )
                header = row
                duplicated = sorted({c for c in header[1:] if header[1:].count(c) > 1})
                if duplicated:
                    raise VGGError(f"{path}:{n}: class names appear twice in the header: {duplicated[:5]}")
                continue
            if len(row) != len(header):
                raise VGGError(
                    f"{path}:{n}: {len(row)} columns, the header has {len(header)} "
                    f"(path and {len(header) - 1} classes)"
                )
            values = []
            for name, v in zip(header[1:], row[1:]):
                try:
                    value = int(v)
                except ValueError:
                    value = None
                if value not in LABEL_VALUES:
                    raise VGGError(
                        f"{path}:{n}: class {name!r} has value {v!r}; valid: 1 (present), "
                        f"-1 (absent), 0 (difficult only, ignored)"
                    )
                values.append(value)
            rows.append((row[0], values))
            lines.append(n)
    if header is None or not rows:
        raise VGGError(f"{path}: the label file lists no images")
    seen: dict[str, int] = {}
    for (p, _), n in zip(rows, lines):
        if p in seen:
            raise VGGError(f"{path}:{n}: image {p!r} is listed twice (first on line {seen[p]})")
        seen[p] = n
    missing = [(p, n) for (p, _), n in zip(rows, lines) if not (root / p).is_file()]
    if missing:
        p, n = missing[0]
        raise VGGError(
            f"{path}:{n}: image {p!r} does not exist under {root} ({len(missing)} listed images are missing)"
        )
    targets = np.array([v for _, v in rows], dtype=np.int8)
    samples = [(str(root / p), tuple(int(x) for x in v)) for p, v in rows]
    return MultiLabelSource(
        samples, list(header[1:]), str(root), "multilabel", [p for p, _ in rows], targets=targets
    )


def is_multilabel_csv(path: Path) -> bool:
    with open(path, newline="") as f:
        for row in csv.reader(f, delimiter=_delimiter(path)):
            if row and not row[0].startswith("#"):
                return len(row) > 2 and row[0].strip().lower() in ("path", "file", "filename", "image")
    return False


def source_labels(source: Source) -> tuple[str, np.ndarray]:
    """("multi", (N, C) int8) for a multi-label source, ("single", (N,) int64) otherwise."""
    if isinstance(source, MultiLabelSource):
        return "multi", np.asarray(source.targets, dtype=np.int8)
    return "single", np.array([label for _, label in source.samples], dtype=np.int64)
