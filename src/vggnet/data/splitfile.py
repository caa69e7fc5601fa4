"""``vggnet data split``: a label file (``path,label``) or a box file (``path,wnid,xmin,...``, several
rows per image) split by image into training, validation and tuning parts.

Every row of an image goes to the same part (a box file's images are not cut in two), the split is
class-stratified by the image's class (the class of its first row) exactly as the hold-out of
training (:func:`datasets.split_holdout`, which it uses), and it depends on the seed alone. The
parts keep the file's header, columns and row order; their paths are rewritten relative to the
folder they are written to, so each part is read with the default root. App. A tunes the merging
threshold on images that neither trained nor measured the net: the ``tune`` part.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..errors import VGGError
from ..fileio import claim_output, write_text
from .datasets import MAX_FILES, Source, is_header, label_columns, split_holdout


def read_table(path: Path) -> tuple[list[str] | None, list[list[str]], str]:
    """The header (None when the file has none), the data rows and the delimiter."""
    if not path.is_file():
        raise VGGError(f"file not found: {path} (give a label file or a box file)")
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
    header, rows = None, []
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            for row in csv.reader(f, delimiter=delimiter):
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if header is None and not rows and is_header(row):
                    header = row
                    continue
                rows.append(row)
                if len(rows) > MAX_FILES:
                    raise VGGError(f"{path}: more than {MAX_FILES:,} rows; refusing to read them all")
    except csv.Error as e:
        raise VGGError(f"{path}: not a readable CSV file ({e})") from None
    if not rows:
        raise VGGError(f"{path}: lists no images")
    return header, rows, delimiter


def by_image(path: Path, header, rows) -> tuple[list[str], dict[str, list[int]], dict[str, str]]:
    """Image ids in first-seen order, the rows of each, and each image's class (its first row's)."""
    p_col, c_col = label_columns(header, path) if header else (0, 1)
    order, members, label = [], {}, {}
    for n, row in enumerate(rows):
        if len(row) <= max(p_col, c_col):
            raise VGGError(
                f"{path}: row {n + 1 + bool(header)} has {len(row)} fields; expected a path and a class"
            )
        image = os.path.normpath(row[p_col].strip())
        if image not in members:
            order.append(image)
            members[image], label[image] = [], row[c_col].strip()
        members[image].append(n)
    return order, members, label


def plan_parts(order, label, val: float, tune: float, seed: int) -> dict[str, list[str]]:
    """The images of each part: tune held out of the whole (stratified), then val out of the rest,
    each part taking at least one image of every class that has images to spare."""
    if not (0 <= val < 1 and 0 <= tune < 1 and 0 < val + tune < 1):
        raise VGGError(
            f"--val and --tune must be fractions with 0 < val + tune < 1, got {val:g} and {tune:g}"
        )
    classes = sorted(set(label.values()))
    index = {c: i for i, c in enumerate(classes)}
    source = Source([(image, index[label[image]]) for image in order], classes, "", "list", list(order))
    rest, tuning = split_holdout(source, tune, seed) if tune else (source, source.subset([]))
    train, held = split_holdout(rest, val / (1 - tune), seed) if val else (rest, rest.subset([]))
    return {"train": train.ids, "val": held.ids, "tune": tuning.ids}


def _rebased(cell: str, root: Path, out_dir: Path) -> str:
    """A path of the input (relative to `root`) as the part written to `out_dir` reads it: relative
    to that folder when the image is under it, else absolute."""
    if os.path.isabs(cell.strip()):
        return cell
    image = os.path.abspath(root / cell.strip())
    relative = os.path.relpath(image, os.path.abspath(out_dir))
    return image if relative.split(os.sep)[0] == ".." else relative


def split_file(
    path, val: float = 0.1, tune: float = 0.0, seed: int = 0, root=None, out_dir=None, force: bool = False
) -> dict:
    """Write ``NAME-train.csv``, ``NAME-val.csv`` (and ``NAME-tune.csv`` with `tune`) beside `path`
    or into `out_dir`; returns each part's file, images and rows. Nothing is written unless every
    part may be."""
    path = Path(path)
    header, rows, delimiter = read_table(path)
    order, members, label = by_image(path, header, rows)
    parts = plan_parts(order, label, val, tune, seed)
    root = Path(root) if root is not None else path.parent
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    suffix = path.suffix if path.suffix.lower() in (".csv", ".tsv") else ".csv"
    files = {name: out_dir / f"{path.stem}-{name}{suffix}" for name, images in parts.items() if images}
    for file in files.values():
        claim_output(file, "CSV" if suffix == ".csv" else "file", force)
    out_dir.mkdir(parents=True, exist_ok=True)
    p_col = label_columns(header, path)[0] if header else 0
    result = {}
    for name, file in files.items():
        chosen = sorted(n for image in parts[name] for n in members[image])  # the file's own order
        text = io.StringIO()
        writer = csv.writer(text, delimiter=delimiter, lineterminator="\n")
        if header:
            writer.writerow(header)
        for n in chosen:
            row = list(rows[n])
            row[p_col] = _rebased(row[p_col], root, out_dir)
            writer.writerow(row)
        write_text(file, text.getvalue(), errors="surrogateescape")
        result[name] = dict(file=str(file), images=len(parts[name]), rows=len(chosen))
    return dict(parts=result, classes=len(set(label.values())), images=len(order), seed=seed)
