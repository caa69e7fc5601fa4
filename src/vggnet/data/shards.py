"""Images stored as uncompressed tar shards, one storage format behind the one data seam.

A shard folder holds ``shard-000000.tar``, ``shard-000001.tar``, ... in WebDataset's naming: each
image is a member ``KEY.jpg`` (or ``.png`` ...: the original file's bytes, not re-encoded) beside
``KEY.cls`` (its class index, text) and ``KEY.json`` (its id and class name), so WebDataset and tar
read them too. ``shards.json`` is the index: the classes, and per image its shard, the byte offset
and size of its data in the tar, its class and id. With the index an image is read by a seek, so
any image is reachable in any order: the seeded, resumable epoch order of ``loaders.py`` (and so
exact resume) holds as for a folder. Written by ``vggnet data shard``; read by ``open_source``.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from ..errors import VGGError
from ..fileio import atomic_write, claim_folder, read_json, write_json
from .images import decode_rgb
from .source import Source

INDEX = "shards.json"
FORMAT = "vggnet-shards/1"


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Add `data` as member `name`; the byte offset of its data in the archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # no time stamp: the same input, the same shard
    start = tar.offset
    tar.addfile(info, io.BytesIO(data))
    return start + len(info.tobuf(tar.format, tar.encoding, tar.errors))


def _write_shard(path: Path, items: list[tuple[str, str, bytes, int, str, str]]) -> list[int]:
    """Write one shard atomically; the data offsets of its images."""
    offsets: list[int] = []

    def write(tmp):
        offsets.clear()
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, ext, data, label, class_name, ident in items:
                offsets.append(_member(tar, key + ext, data))
                _member(tar, key + ".cls", f"{label}\n".encode())
                _member(tar, key + ".json", json.dumps(dict(id=ident, cls=class_name)).encode())

    atomic_write(path, write)
    return offsets


def write_shards(source: Source, out, per_shard: int = 1000, force: bool = False, progress=None) -> dict:
    """Copy every image of `source` (its file's bytes, in the source's order) into tar shards of
    `per_shard` images under `out`, then the index. Refuses to replace shards it did not write
    unless `force`; an unreadable file is an error (check a data set with ``vggnet data check``)."""
    if per_shard < 1:
        raise VGGError(f"--per-shard must be >= 1, got {per_shard}")
    out = Path(out)
    count = -(-len(source) // per_shard)
    claim_folder(out, {INDEX: "shard index", **{shard_name(i): "tar shard" for i in range(count)}}, force)
    out.mkdir(parents=True, exist_ok=True)
    samples, shards = [], []
    for i in range(count):
        items = []
        for index in range(i * per_shard, min(len(source), (i + 1) * per_shard)):
            path, label = source.samples[index]
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise VGGError(f"cannot read {path}: {e.strerror or e}") from None
            ext = Path(path).suffix.lower() or ".img"
            items.append((f"{index:09d}", ext, data, label, source.classes[label], source.ids[index]))
        offsets = _write_shard(out / shard_name(i), items)
        shards.append(shard_name(i))
        samples += [
            [i, offset, len(data), key + ext, label, ident]
            for (key, ext, data, label, _, ident), offset in zip(items, offsets)
        ]
        if progress:
            progress(len(samples))
    write_json(out / INDEX, dict(format=FORMAT, classes=list(source.classes), shards=shards, samples=samples))
    return dict(out=str(out), shards=len(shards), images=len(samples), classes=len(source.classes))


class ShardReader:
    """(name, min_side) -> the decoded image, read by a seek into its shard. Picklable: loader
    workers each open the shards they need."""

    def __init__(self, folder: Path, where: dict[str, tuple[str, int, int]]):
        self.folder, self.where = folder, where

    def __call__(self, name: str, min_side: int | None = None):
        shard, offset, size = self.where[name]
        with open(self.folder / shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        return decode_rgb(data, name, min_side)


def _check_index(doc, path: Path) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VGGError(f"{path}: not a shard index (format {FORMAT}); write one with `vggnet data shard`")
    classes, shards, samples = doc.get("classes"), doc.get("shards"), doc.get("samples")
    if not (isinstance(classes, list) and isinstance(shards, list) and isinstance(samples, list) and samples):
        raise VGGError(f"{path}: a shard index lists classes, shards and samples; this one does not")
    sizes = [(path.parent / s).stat().st_size if (path.parent / s).is_file() else None for s in shards]
    for n, row in enumerate(samples):
        ok = (
            isinstance(row, list)
            and len(row) == 6
            and all(isinstance(v, int) for v in row[:3])
            and isinstance(row[4], int)
            and 0 <= row[4] < len(classes)
            and 0 <= row[0] < len(shards)
        )
        if not ok:
            raise VGGError(f"{path}: sample {n} is not [shard, offset, size, name, class, id]: {row!r}"[:300])
        if sizes[row[0]] is None:
            raise VGGError(f"{path}: shard {shards[row[0]]} is missing")
        if row[1] < 0 or row[2] < 0 or row[1] + row[2] > sizes[row[0]]:
            raise VGGError(f"{path}: sample {n} lies outside {shards[row[0]]} (was the shard rewritten?)")


def open_shards(spec, classes: list[str] | None = None) -> Source:
    """The Source of a shard folder (or its ``shards.json``); with `classes` (a model's), its
    labels in that order."""
    spec = Path(spec)
    path = spec / INDEX if spec.is_dir() else spec
    doc = read_json(path, "shard index")
    _check_index(doc, path)
    own = doc["classes"]
    if classes is None:
        classes = own
    missing = sorted(set(own) - set(classes))
    if missing:
        raise VGGError(
            f"{path}: classes {missing[:5]} are not among the {len(classes)} classes (e.g. {classes[:5]})"
        )
    to = {i: classes.index(c) for i, c in enumerate(own)}
    folder, shards = path.parent, doc["shards"]
    where, samples, ids = {}, [], []
    for shard, offset, size, member, label, ident in doc["samples"]:
        name = f"{folder / shards[shard]}:{member}"
        where[name] = (shards[shard], offset, size)
        samples.append((name, to[label]))
        ids.append(str(ident))
    return Source(samples, list(classes), str(folder), "shards", ids, ShardReader(folder, where))


def is_shard_index(spec) -> bool:
    spec = Path(spec)
    return (spec.is_dir() and (spec / INDEX).is_file()) or (spec.is_file() and spec.name == INDEX)
