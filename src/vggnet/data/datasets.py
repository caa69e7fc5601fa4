"""Where images and labels come from.

- an image folder, one sub-folder per class (the ImageNet / ImageFolder layout);
- a file list (CSV or TSV, ``path,label`` rows, paths relative to a root) -- e.g. the ImageNet
  validation set, whose images sit in one folder and whose labels are in a separate file.

Class names and their order are stable: sorted folder names, or sorted distinct labels, or the
order a checkpoint gives. Everything is checked before any work starts: a missing folder, an
empty data set, a label file that names missing images or unknown classes are refused.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import VGGError
from .boxfiles import BoxSource, is_annotation_folder, is_box_csv, read_box_csv, read_voc_annotations
from .images import is_image_file
from .multilabel import MultiLabelSource, is_multilabel_csv, multilabel_csv
from .shards import is_shard_index, open_shards
from .source import Source, split_holdout  # noqa: F401  (the hold-out of every source)
from .tinyimagenet import is_tiny_root, is_tiny_val_folder, val_samples

MAX_FILES = 20_000_000  # a walk that finds more is refused: no data set of this field is that large


def _inode(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def walk_images(root, seen: set | None = None) -> list[str]:
    """Every image file under `root`, in a stable order, following links to folders but entering
    each real folder once: a link loop (``class/up -> ..``) ends, and a folder reached twice
    through links does not count its images twice. Folders in `seen` (their (device, inode)) are
    not entered, except `root` itself; the set grows with the folders entered."""
    seen = set() if seen is None else seen
    out, first = [], True
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        key = _inode(dirpath)
        if key in seen and not first:
            dirnames[:] = []
            continue
        first = False
        seen.add(key)
        dirnames.sort()
        out += [os.path.join(dirpath, name) for name in sorted(filenames) if is_image_file(name)]
        if len(out) > MAX_FILES:
            raise VGGError(f"{root}: more than {MAX_FILES:,} image files; refusing to list them all")
    return out


def image_folder(root, classes: list[str] | None = None) -> Source:
    root = Path(root)
    if not root.is_dir():
        raise VGGError(f"data folder not found: {root}")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not found:
        raise VGGError(f"{root}: no class sub-folders (expected ImageFolder layout root/<class>/<image>)")
    if classes is None:
        classes = found
    else:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise VGGError(
                f"{root}: class folders {extra[:5]} are not among the {len(classes)} classes "
                f"of the model (e.g. {classes[:5]})"
            )
    index = {c: i for i, c in enumerate(classes)}
    samples, ids = [], []
    # A link out of a class folder to the root or to another class (``a/up -> ..``) is not
    # followed: the images found through it would be counted again, under the wrong class.
    seen = {_inode(root)} | {_inode(root / c) for c in found}
    for c in found:
        for path in walk_images(root / c, seen):
            samples.append((path, index[c]))
            ids.append(os.path.relpath(path, root))
    if not samples:
        raise VGGError(
            f"{root}: no image files found in {len(found)} class folders (extensions: .jpg .jpeg .png ...)"
        )
    return Source(samples, list(classes), str(root), "folder", ids)


def file_list(path, root=None, classes: list[str] | None = None) -> Source:
    """Read a CSV/TSV of ``path,label`` rows. A header is optional; when there is one (a first row
    naming a known column), the columns are read by its names, and it must name both."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"label file not found: {path}")
    root = Path(root) if root is not None else path.parent
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\0" in head:
        raise VGGError(f"{path}: not a text label file (binary content; expected 'path,label' rows)")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") and b"\t" in head else ","
    rows, columns, first = [], (0, 1), None
    try:
        # -sig: a byte-order mark is not part of a path. surrogateescape: a path is a file name,
        # which on POSIX is bytes; one that is not UTF-8 is read as Python names such files (and
        # as the demo writes its held-out list). A label is a class name: it must be text.
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            for n, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
                if not row or row[0].startswith("#"):
                    continue
                if first is None:
                    first = row
                    if is_header(row):
                        columns = label_columns(row, path)
                        continue
                if len(row) <= max(columns):
                    raise VGGError(f"{path}:{n}: expected 'path{delimiter}label', got {row!r}"[:300])
                rows.append((row[columns[0]].strip(), row[columns[1]].strip()))
                rows[-1][1].encode("utf-8")  # a label that is not UTF-8 text: UnicodeEncodeError
                if len(rows) > MAX_FILES:
                    raise VGGError(f"{path}: more than {MAX_FILES:,} rows; refusing to read them all")
    except UnicodeError:
        raise VGGError(
            f"{path}:{n}: the label is not UTF-8 text; a label file is 'path,label' rows, UTF-8"
        ) from None
    except csv.Error as e:
        raise VGGError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise VGGError(f"{path}: the label file lists no images")
    labels = sorted({label for _, label in rows}, key=lambda s: (0, int(s)) if s.isdigit() else (1, s))
    if classes is None:
        classes = labels
    else:
        unknown_labels = [label for label in labels if label not in classes]
        if unknown_labels:
            raise VGGError(
                f"{path}: labels {unknown_labels[:5]} are not among the {len(classes)} classes "
                f"(e.g. {classes[:5]})"
            )
    index = {c: i for i, c in enumerate(classes)}
    missing = [p for p, _ in rows if not (root / p).is_file()]
    if missing == [rows[0][0]] and len(rows) > 1:  # only the first row: an unknown header
        raise VGGError(
            f"{path}: the first row {','.join(first)!r} is neither an image under {root} nor a "
            f"header naming the columns (expected path,label; a path column may be called "
            f"{'/'.join(PATH_COLUMNS)}, a label column {'/'.join(LABEL_COLUMNS)})"
        )
    if missing:
        missing = list(dict.fromkeys(missing))  # a box file lists an image once per box
        none_found = len(missing) == len({p for p, _ in rows})
        elsewhere = (
            (
                "; the paths are read relative to that folder: if the images are in another one, "
                "give it with --root (train: --data-root)"
            )
            if none_found
            else ""
        )
        raise VGGError(
            f"{path}: {len(missing)} listed images do not exist under {root}, e.g. "
            + ", ".join(missing[:3])
            + elsewhere
        )
    samples = [(str(root / p), index[label]) for p, label in rows]
    return Source(samples, list(classes), str(root), "list", [p for p, _ in rows])


def tiny_val_folder(folder, classes: list[str] | None = None) -> Source:
    """Tiny ImageNet's ``val/``: one image folder, labels in ``val_annotations.txt``."""
    pairs, classes = val_samples(folder, classes)
    index = {c: i for i, c in enumerate(classes)}
    return Source(
        [(p, index[w]) for p, w in pairs],
        classes,
        str(folder),
        "tiny-imagenet-val",
        [os.path.relpath(p, folder) for p, _ in pairs],
    )


PATH_COLUMNS = ("path", "file", "filename", "image")
LABEL_COLUMNS = ("label", "wnid", "class", "name")


def is_header(row: list[str]) -> bool:
    """A first row that names any known column is a header (and must then name both)."""
    return any(c.strip().lower() in PATH_COLUMNS + LABEL_COLUMNS for c in row)


def label_columns(header: list[str], path) -> tuple[int, int]:
    """The positions of the path and label columns a header names: the columns are read by name,
    never by position, so a header that lacks one is refused rather than read wrongly."""
    names = [c.strip().lower() for c in header]
    found = [
        next((names.index(n) for n in group if n in names), None) for group in (PATH_COLUMNS, LABEL_COLUMNS)
    ]
    if None in found:
        missing, group = ("path", PATH_COLUMNS) if found[0] is None else ("label", LABEL_COLUMNS)
        raise VGGError(
            f"{path}: the header {','.join(header)!r} names no {missing} column "
            f"(one of {', '.join(group)}); a label file is path,label rows"
        )
    return found[0], found[1]


def open_source(spec, root=None, classes: list[str] | None = None, *, boxes=False, on_bad="fail") -> Source:
    """The one factory of labelled image sets, keyed by what the user gives: a folder of tar
    shards (its ``shards.json``), a folder of ILSVRC/VOC XML annotations (images under `root`,
    default its parent: a :class:`BoxSource`), a folder (ImageFolder layout; Tiny ImageNet's
    ``val/``), or a file: a multi-label CSV (a :class:`MultiLabelSource`), a box CSV (a
    :class:`BoxSource`) or a ``path,label`` file (``.csv``/``.tsv``/``.txt``).

    `boxes`: the caller needs boxes (``vggnet loc``): a file is a box CSV whatever its header (the
    header is optional there, so it cannot be told from a label file), and anything that holds no
    boxes is refused in one line. `on_bad`: what a box reader does with an invalid box row."""
    spec = Path(spec)
    if boxes:
        return _box_source(spec, root, classes, on_bad)
    if is_shard_index(spec):
        return open_shards(spec, classes)
    if spec.is_dir() and is_tiny_root(spec):
        raise VGGError(f"{spec} is a Tiny ImageNet folder: give {spec / 'train'} or {spec / 'val'}")
    if spec.is_dir() and is_tiny_val_folder(spec):
        return tiny_val_folder(spec, classes)
    if spec.is_dir() and is_annotation_folder(spec):
        return _annotations(spec, root, classes, on_bad)
    if spec.is_dir():
        return image_folder(spec, classes)
    if spec.suffix.lower() in (".csv", ".tsv", ".txt") and spec.is_file():
        if is_box_csv(spec):  # first: its header also starts with "path" and has more columns
            return read_box_csv(spec, root, classes, on_bad)
        if is_multilabel_csv(spec):
            return multilabel_csv(spec, root)
        return file_list(spec, root, classes)
    if not spec.exists():
        raise VGGError(f"data not found: {spec} (give an image folder or a .csv/.tsv label file)")
    raise VGGError(f"{spec}: not a folder or a .csv/.tsv label file")


def _box_source(spec: Path, root, classes, on_bad: str) -> BoxSource:
    if spec.is_file():
        return read_box_csv(spec, root, classes, on_bad)
    if spec.is_dir():  # searched recursively: deeper than open_source's look at a folder
        return _annotations(spec, root, classes, on_bad)
    raise VGGError(f"box data not found: {spec} (give a box CSV or a folder of XML annotations)")


def _annotations(folder: Path, root, classes, on_bad: str) -> BoxSource:
    """A folder of XML annotations; its images under `root`, by default the folder's parent."""
    return read_voc_annotations(folder, Path(root) if root else folder.parent, classes, on_bad)


def single_label(source: Source, spec) -> Source:
    """`source`, refused with one line if it is multi-label: a classifier trains and is evaluated on
    one class per image (multi-label sets are for ``vggnet features`` and ``vggnet transfer``)."""
    if isinstance(source, MultiLabelSource):
        raise VGGError(
            f"{spec}: a multi-label CSV (one column per class); training, evaluation and shards take "
            "one class per image (a folder, a path,label file or a box file): use it with vggnet "
            "features and transfer"
        )
    return source


def unlabelled_source(target, root=None) -> Source:
    """Images whose labels are not needed (colour statistics): a folder of any layout, class
    sub-folders or none, or a label file."""
    target = Path(target)
    if is_shard_index(target) or not target.is_dir():
        return open_source(target, root)
    paths = image_files(target)
    ids = [os.path.relpath(p, target) for p in paths]
    return Source([(p, 0) for p in paths], ["-"], str(target), "folder", ids)


def image_files(target, root=None) -> list[str]:
    """Every image file of a folder (any layout, sub-folders included) or a label file's list."""
    target = Path(target)
    if target.is_dir():
        paths = walk_images(target)
    elif target.is_file() and is_image_file(target.name):
        paths = [str(target)]
    elif target.is_file():  # a box file lists an image once per box: each image is checked once
        paths = list(dict.fromkeys(p for p, _ in file_list(target, root).samples))
    else:
        raise VGGError(f"data not found: {target}")
    if not paths:
        raise VGGError(f"{target}: no image files found")
    return paths


def images_to_check(target, root=None) -> Source:
    """What ``vggnet data check`` decodes: a shard folder's images, or every image file of a folder,
    a label file or one file (see :func:`image_files`), as an unlabelled Source."""
    if is_shard_index(target):
        return open_shards(target)
    paths = image_files(target, root)
    return Source([(p, 0) for p in paths], [], str(target), "files", list(paths))
