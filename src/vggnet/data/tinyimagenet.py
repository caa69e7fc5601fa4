"""Tiny ImageNet-200 (Stanford CS231n) in its own layout:

    ROOT/wnids.txt                              one wnid a line (the classes)
    ROOT/words.txt                              wnid <tab> readable name (all of WordNet)
    ROOT/train/<wnid>/images/<wnid>_<k>.JPEG    64 x 64 px, 500 per class
    ROOT/train/<wnid>/<wnid>_boxes.txt          file <tab> x0 y0 x1 y1 (one box per image)
    ROOT/val/images/val_<k>.JPEG                50 per class
    ROOT/val/val_annotations.txt                file <tab> wnid x0 y0 x1 y1

Box corners are inclusive pixel indices (0..63, as ILSVRC's, 0-based): the project's boxes have
their max exclusive, so x1 + 1 and y1 + 1.

Two ways in, both checked the same way (every malformed line refused as ``file:line: reason``,
every image the annotations do not name and every annotation naming no image refused):

- ``open_source`` reads ``ROOT/train`` (an ImageFolder: class folders) and ``ROOT/val`` (images
  labelled by ``val_annotations.txt``) directly, for every command that takes ``--data``;
- ``vggnet data tiny-imagenet ROOT --out DIR`` writes the project's CSV formats once: label files
  (``train.csv``, ``val.csv``) and box files (``train-boxes.csv``, ``val-boxes.csv``) for the
  localisation commands, with ``classes.tsv`` (wnid, readable name from ``words.txt``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import VGGError
from ..fileio import atomic_write, claim_folder
from .images import is_image_file

VAL_ANNOTATIONS = "val_annotations.txt"
MAX_LINES = 10_000_000  # annotation lines read before refusing (the real data set has 110,000)


@dataclass
class Annotated:
    """One image of the layout: path relative to ROOT, its wnid and its box (max exclusive)."""

    path: str
    wnid: str
    box: tuple[float, float, float, float] | None


@dataclass
class TinyImageNet:
    root: Path
    classes: list[str]  # wnids.txt order
    names: dict[str, str] = field(default_factory=dict)  # wnid -> readable name (words.txt)
    train: list[Annotated] = field(default_factory=list)
    val: list[Annotated] = field(default_factory=list)


def is_tiny_val_folder(folder) -> bool:
    folder = Path(folder)
    return (folder / VAL_ANNOTATIONS).is_file() and (folder / "images").is_dir()


def is_tiny_root(root) -> bool:
    root = Path(root)
    return (root / "wnids.txt").is_file() and (root / "train").is_dir() and is_tiny_val_folder(root / "val")


def _lines(path: Path):
    """(line number, tab-separated fields) of a text file, blank lines left out."""
    if not path.is_file():
        raise VGGError(f"{path}: not found (Tiny ImageNet layout, see `vggnet data tiny-imagenet --help`)")
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, start=1):
            if n > MAX_LINES:
                raise VGGError(f"{path}: more than {MAX_LINES:,} lines; not a Tiny ImageNet annotation file")
            if line.strip():
                yield n, line.rstrip("\r\n").split("\t")


def _box(fields: list[str], where: str) -> tuple[float, float, float, float]:
    """Four inclusive integer corners -> (xmin, ymin, xmax, ymax) with max exclusive."""
    try:
        x0, y0, x1, y1 = (int(v) for v in fields)
    except ValueError:
        raise VGGError(
            f"{where}: expected four integer box corners x0 y0 x1 y1, got {fields!r}"[:300]
        ) from None
    if not (0 <= x0 <= x1 and 0 <= y0 <= y1):
        raise VGGError(f"{where}: box corners must satisfy 0 <= x0 <= x1 and 0 <= y0 <= y1, got {fields!r}")
    return float(x0), float(y0), float(x1 + 1), float(y1 + 1)


def read_classes(root: Path) -> list[str]:
    classes = [fields[0].strip() for _, fields in _lines(root / "wnids.txt")]
    if not classes:
        raise VGGError(f"{root / 'wnids.txt'}: lists no classes")
    if len(set(classes)) != len(classes):
        twice = next(c for i, c in enumerate(classes) if c in classes[:i])
        raise VGGError(f"{root / 'wnids.txt'}: names {twice} twice")
    return classes


def read_names(root: Path, classes: list[str]) -> dict[str, str]:
    """Readable names of `classes` from words.txt (the wnid itself where it has none)."""
    wanted, names = set(classes), {}
    if (root / "words.txt").is_file():
        for _, fields in _lines(root / "words.txt"):
            if fields[0] in wanted and len(fields) > 1:
                names[fields[0]] = fields[1].strip()
    return {c: names.get(c, c) for c in classes}


def _on_disk(folder: Path) -> set[str]:
    return (
        {p.name for p in folder.iterdir() if p.is_file() and is_image_file(p.name)}
        if folder.is_dir()
        else set()
    )


def _check_coverage(named: dict[str, str], on_disk: set[str], folder: Path, ann: Path) -> None:
    missing = sorted(set(named) - on_disk)
    if missing:
        raise VGGError(
            f"{named[missing[0]]}: names {missing[0]}, which is not in {folder} "
            f"({len(missing)} annotated images missing)"
        )
    unnamed = sorted(on_disk - set(named))
    if unnamed:
        raise VGGError(
            f"{folder / unnamed[0]}: not named in {ann} ({len(unnamed)} images without "
            f"annotation); remove them or annotate them"
        )


def _read_annotations(ann: Path, images: Path, columns: tuple[str, ...], make) -> list[Annotated]:
    """The rows of an annotation file (tab-separated `columns`, the file name first), each made into
    an Annotated by ``make(name, fields, where)``; every image in `images` named exactly once."""
    rows, named = [], {}
    for n, fields in _lines(ann):
        where = f"{ann}:{n}"
        if len(fields) != len(columns):
            raise VGGError(
                f"{where}: expected {len(columns)} tab-separated fields ({', '.join(columns)}), "
                f"got {len(fields)}"
            )
        name = fields[0].strip()
        if name in named:
            raise VGGError(f"{where}: {name} is annotated twice (also {named[name]})")
        named[name] = where
        rows.append(make(name, fields, where))
    _check_coverage(named, _on_disk(images), images, ann)
    if not rows:
        raise VGGError(f"{ann}: annotates no images")
    return rows


def read_val(folder, classes: list[str] | None = None) -> list[Annotated]:
    """The validation folder: images labelled and boxed by val_annotations.txt."""
    folder = Path(folder)

    def make(name, fields, where):
        wnid = fields[1].strip()
        if classes is not None and wnid not in classes:
            raise VGGError(f"{where}: class {wnid} is not among the {len(classes)} classes of wnids.txt")
        return Annotated(f"val/images/{name}", wnid, _box(fields[2:], where))

    columns = ("file", "wnid", "x0", "y0", "x1", "y1")
    return _read_annotations(folder / VAL_ANNOTATIONS, folder / "images", columns, make)


def read_train_class(root: Path, wnid: str) -> list[Annotated]:
    """One class folder: its images, each with its box from <wnid>_boxes.txt. A class without that
    file (two of the 202 classes of the public snapshot) has images without boxes: they train the
    classifier and are left out of the box files."""
    folder, ann = root / "train" / wnid, root / "train" / wnid / f"{wnid}_boxes.txt"
    if not ann.exists():
        images = sorted(_on_disk(folder / "images"))
        if not images:
            raise VGGError(f"{folder / 'images'}: no images of class {wnid}")
        return [Annotated(f"train/{wnid}/images/{name}", wnid, None) for name in images]

    def make(name, fields, where):
        return Annotated(f"train/{wnid}/images/{name}", wnid, _box(fields[1:], where))

    rows = _read_annotations(ann, folder / "images", ("file", "x0", "y0", "x1", "y1"), make)
    return sorted(rows, key=lambda a: a.path)


def read_tiny_imagenet(root) -> TinyImageNet:
    """The whole layout, checked (see the module doc)."""
    root = Path(root)
    if not is_tiny_root(root):
        raise VGGError(
            f"{root}: not a Tiny ImageNet folder (expected wnids.txt, train/ and "
            f"val/{VAL_ANNOTATIONS} + val/images/)"
        )
    classes = read_classes(root)
    extra = sorted(d.name for d in (root / "train").iterdir() if d.is_dir() and d.name not in classes)
    if extra:
        raise VGGError(f"{root / 'train'}: class folders {extra[:3]} are not in wnids.txt")
    train = [a for wnid in classes for a in read_train_class(root, wnid)]
    return TinyImageNet(root, classes, read_names(root, classes), train, read_val(root / "val", classes))


def val_samples(folder, classes: list[str] | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """(absolute path, wnid) of a validation folder, and the class list (given, or sorted wnids)."""
    folder = Path(folder)
    rows = read_val(folder, classes)
    classes = list(classes) if classes is not None else sorted({a.wnid for a in rows})
    return [(str(folder.parent / a.path), a.wnid) for a in rows], classes


OUTPUTS = {
    "train.csv": "CSV",
    "val.csv": "CSV",
    "train-boxes.csv": "CSV",
    "val-boxes.csv": "CSV",
    "classes.tsv": "file",
}


def write_lists(tiny: TinyImageNet, out, force: bool = False) -> dict:
    """The project's CSV formats for the whole data set; paths relative to ROOT (give `--root`)."""
    out = claim_folder(out, OUTPUTS, force)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", tiny.train), ("val", tiny.val)):
        _write_csv(out / f"{split}.csv", ("path", "label"), [(a.path, a.wnid) for a in rows])
        _write_csv(
            out / f"{split}-boxes.csv",
            ("path", "wnid", "xmin", "ymin", "xmax", "ymax"),
            [(a.path, a.wnid, *(f"{v:g}" for v in a.box)) for a in rows if a.box is not None],
        )
    _write_csv(out / "classes.tsv", ("wnid", "name"), [(c, tiny.names[c]) for c in tiny.classes], "\t")
    unboxed = sorted({a.wnid for a in tiny.train if a.box is None})
    return dict(
        out=str(out),
        root=str(tiny.root),
        classes=len(tiny.classes),
        train=len(tiny.train),
        val=len(tiny.val),
        unboxed_classes=unboxed,
    )


def _write_csv(path: Path, header, rows, delimiter: str = ",") -> Path:
    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)

    return atomic_write(path, write)
