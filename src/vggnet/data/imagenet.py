"""ImageNet-1k (ILSVRC-2012) class metadata, and the validation ground truth as a label file.

Class index order is the wnids sorted (n01440764 ... n15075141): the order of torchvision's and of
the Caffe release's 1000 outputs. ``resources/imagenet1k.tsv`` holds ``wnid<TAB>name`` for the 1,000
classes in that order; the names are the usual short readable ones ("great white shark",
"English springer"), not the full WordNet synonym lists. Two names occur twice (crane the bird and the
machine, maillot twice): the wnid, not the name, identifies a class.

The validation ground truth comes in two official forms, both turned into ``path,label`` rows that
:func:`vggnet.data.datasets.file_list` reads (``ILSVRC2012_val_00000001.JPEG,n01751748``):

- the 2012 devkit: ``data/ILSVRC2012_validation_ground_truth.txt`` has one ILSVRC2012_ID per line, line i
  for image ``ILSVRC2012_val_{i:08d}.JPEG``. The IDs (1-1000) are the devkit's own numbering, **not**
  the sorted-wnid index; ``data/meta.mat``'s ``synsets`` struct array (fields ILSVRC2012_ID, WNID,
  words, ...) maps each ID to its wnid.
- ``LOC_val_solution.csv`` (``ImageId,PredictionString``): the string is "wnid xmin ymin xmax ymax"
  repeated once per box; every box of a validation image has the image's class, so the label is the
  first wnid.
"""

from __future__ import annotations

import csv
import io
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.io import loadmat  # imported here: scipy is slow to import and only this needs it

from ..errors import VGGError
from ..fileio import atomic_write, claim_output

MAX_META_BYTES = 64 * 1024**2  # the devkit's meta.mat is ~2 MB
MAX_TEXT_BYTES = 64 * 1024**2  # the ground truth is ~200 kB, LOC_val_solution.csv ~2 MB
WNID = re.compile(r"n\d{8}")
NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, str], ...]:
    text = (resources.files("vggnet") / "resources" / "imagenet1k.tsv").read_text(encoding="utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line)
    if len(rows) != NUM_CLASSES:  # a damaged installation, not a user error
        raise RuntimeError(
            f"vggnet/resources/imagenet1k.tsv lists {len(rows)} classes, expected {NUM_CLASSES}"
        )
    return rows


def imagenet_classes() -> list[str]:
    """The 1,000 ILSVRC-2012 wnids in class-index order (sorted)."""
    return [wnid for wnid, _ in _table()]


def imagenet_names() -> dict[str, str]:
    """wnid -> readable class name, in class-index order."""
    return dict(_table())


def readable_names(classes: list[str]) -> list[str]:
    """Readable names: ImageNet wnids get their class names; other classes are their own names."""
    names = imagenet_names()
    return [names.get(c, c) for c in classes]


def class_name(wnid: str) -> str:
    """The readable name of one ILSVRC-2012 class (``class_name("n01440764") == "tench"``)."""
    names = imagenet_names()
    if wnid not in names:
        raise VGGError(
            f"unknown ImageNet class {wnid!r}: not one of the {NUM_CLASSES} ILSVRC-2012 wnids "
            f"(n01440764 ... n15075141)"
        )
    return names[wnid]


def val_image_name(index: int) -> str:
    """File name of validation image `index` (1-based), as in the ILSVRC-2012 validation archive."""
    return f"ILSVRC2012_val_{index:08d}.JPEG"


# -- reading the official files ---------------------------------------------------------------------
def _bounded_file(path, what: str, limit: int) -> Path:
    """`path`, refused when missing or over `limit` bytes (the official files are small)."""
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"{what} not found: {path}")
    if path.stat().st_size > limit:
        raise VGGError(f"{path}: over the {limit}-byte limit for {what}")
    return path


def _read_text(path, what: str) -> str:
    path = _bounded_file(path, what, MAX_TEXT_BYTES)
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise VGGError(f"{path}: not a text file ({e})") from None


def devkit_synsets(meta_mat) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid from the devkit's ``meta.mat``."""
    path = _bounded_file(meta_mat, "the devkit's meta.mat", MAX_META_BYTES)
    try:
        # Plain arrays and structs only: loadmat builds no MATLAB objects and runs no code.
        mat = loadmat(str(path), squeeze_me=True, struct_as_record=True)
    except NotImplementedError:
        raise VGGError(
            f"{path}: a MATLAB v7.3 (HDF5) file; the devkit's meta.mat is v5, save it with -v7 or earlier"
        ) from None
    except Exception as e:  # scipy raises several types for a file that is not a MAT file
        raise VGGError(f"{path}: not a readable MAT file ({type(e).__name__}: {e})") from None
    synsets = mat.get("synsets")
    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if "ILSVRC2012_ID" not in names or "WNID" not in names:
        raise VGGError(
            f"{path}: no 'synsets' struct array with fields ILSVRC2012_ID and WNID (is this the "
            f"devkit's data/meta.mat?)"
        )
    table: dict[int, str] = {}
    for n, entry in enumerate(np.atleast_1d(synsets), start=1):
        try:
            ident = int(np.asarray(entry["ILSVRC2012_ID"]).reshape(-1)[0])
            wnid = str(np.asarray(entry["WNID"]).reshape(-1)[0]).strip()
        except (IndexError, TypeError, ValueError):
            raise VGGError(f"{path}: synsets entry {n} has no readable ILSVRC2012_ID/WNID") from None
        if not WNID.fullmatch(wnid):
            raise VGGError(f"{path}: synsets entry {n} (ILSVRC2012_ID {ident}) has WNID {wnid!r}, not a wnid")
        if ident in table:
            raise VGGError(
                f"{path}: ILSVRC2012_ID {ident} occurs twice in synsets (entries of "
                f"{table[ident]} and {wnid})"
            )
        table[ident] = wnid
    return table


def devkit_to_labels(ground_truth_txt, meta_mat, image_dir=None) -> list[tuple[str, str]]:
    """``(image file name, wnid)`` rows for the validation set from the 2012 devkit's ground truth and
    ``meta.mat``. With `image_dir`, every listed image must exist there."""
    ids = devkit_synsets(meta_mat)
    lines = _read_text(ground_truth_txt, "ground-truth file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        try:
            ident = int(text)
        except ValueError:
            raise VGGError(
                f"{ground_truth_txt}:{n}: expected an ILSVRC2012_ID (an integer), got {text!r}"
            ) from None
        if ident not in ids:
            raise VGGError(
                f"{ground_truth_txt}:{n}: ILSVRC2012_ID {ident} is not among the {len(ids)} synsets "
                f"of {meta_mat}"
            )
        rows.append((val_image_name(n), ids[ident]))
    if not rows:
        raise VGGError(f"{ground_truth_txt}: no ground-truth lines")
    _check_images(rows, image_dir)
    return rows


def loc_solution_to_labels(solution_csv, image_dir=None) -> list[tuple[str, str]]:
    """``(image file name, wnid)`` rows, sorted by file name, from ``LOC_val_solution.csv``."""
    text = _read_text(solution_csv, "localisation solution file")
    rows, seen = [], set()
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (n == 1 and row[0].strip().lower() == "imageid"):
            continue
        if len(row) < 2 or not row[0].strip():
            raise VGGError(f"{solution_csv}:{n}: expected 'ImageId,PredictionString', got {row!r}")
        image, tokens = row[0].strip(), row[1].split()
        if not tokens or not WNID.fullmatch(tokens[0]) or len(tokens) % 5:
            raise VGGError(f"{solution_csv}:{n}: expected 'wnid xmin ymin xmax ymax' per box, got {row[1]!r}")
        if image in seen:
            raise VGGError(f"{solution_csv}:{n}: image {image} listed twice")
        seen.add(image)
        name = image if Path(image).suffix else f"{image}.JPEG"
        rows.append((name, tokens[0]))
    if not rows:
        raise VGGError(f"{solution_csv}: no images listed")
    rows.sort()
    _check_images(rows, image_dir)
    return rows


def _check_images(rows, image_dir) -> None:
    if image_dir is None:
        return
    root = Path(image_dir)
    if not root.is_dir():
        raise VGGError(f"image folder not found: {root}")
    missing = [p for p, _ in rows if not (root / p).is_file()]
    if missing:
        raise VGGError(
            f"{root}: {len(missing)} of the {len(rows)} listed images are missing, e.g. "
            + ", ".join(missing[:3])
        )


def write_label_file(rows, out_csv, force: bool = False) -> Path:
    """Write ``path,label`` rows (with a header row) atomically. An existing file is replaced only
    with `force`."""
    out = claim_output(out_csv, "CSV", force)
    rows = [(str(p), str(label)) for p, label in rows]
    if not rows:
        raise VGGError(f"{out}: no rows to write")

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("path", "label"))
            writer.writerows(rows)

    return atomic_write(out, write)
