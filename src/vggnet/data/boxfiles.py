"""Images with ground-truth boxes: the localisation data (Appendix A).

Two formats:

- a box CSV, Imagenette's ``boxes-train.csv`` layout (also written by ``vggnet.data.synth``):
  header ``path,wnid,xmin,ymin,xmax,ymax``, paths relative to the CSV's folder (or `root`),
  float pixel coordinates with max exclusive, one row per box, several rows per image;
- ImageNet CLS-LOC / PASCAL VOC XML, one file per image (``<filename>``, ``<size>``,
  repeated ``<object><name>`` + ``<bndbox>``).

Everything is validated before any work starts, and every problem is reported as
``file:line: reason`` (XML: ``file:object N: reason``). ``on_bad="fail"`` raises one
:class:`VGGError` naming the first problem and the total; ``on_bad="skip"`` drops the bad boxes
(and images left without boxes) and lists them in ``BoxSource.skipped``.

A :class:`BoxSource` is a :class:`~vggnet.data.source.Source` (the image and its class, read and
decoded like any other) with its boxes as the annotation beside each image: ``open_source`` returns
one for a box CSV or a folder of XML annotations, and the localisation code reads the boxes.

Class order is that of a classification :class:`vggnet.data.datasets.Source` on the same folder:
sorted class names (or the order given, e.g. a checkpoint's), so a localisation net initialised
from a classifier (Appendix A) indexes the same classes.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import numpy as np
from PIL import Image

from ..errors import VGGError
from ..fileio import claim_output, write_text
from .images import IMAGE_EXTENSIONS
from .source import Source, split_holdout

BOX_TOLERANCE = 1.0  # px: coordinates this far outside the image are float rounding, clipped
MAX_XML_BYTES = 1 << 20  # an annotation is a few KB; anything this large is not one
CSV_COLUMNS = ("path", "wnid", "xmin", "ymin", "xmax", "ymax")
_CLASS_ALIASES = ("wnid", "label", "class", "name")
ON_BAD = ("fail", "skip")


@dataclass
class BoxImage:
    """One image: its class, its ground-truth boxes (source pixels) and their classes."""

    path: str  # absolute (root joined)
    label: int  # the image's class (see the readers for images with several)
    boxes: np.ndarray  # (N, 4) float64, xmin, ymin, xmax, ymax, max exclusive
    box_classes: np.ndarray  # (N,) int64
    size: tuple[int, int]  # (width, height) of the file, from its header
    id: str = ""  # stable id: the path relative to root

    def gt_boxes(self) -> np.ndarray:
        """The boxes of the image's own class (the ones the ILSVRC rule compares against)."""
        return self.boxes[self.box_classes == self.label]


@dataclass
class BoxSource(Source):
    """A localisation data set: a :class:`Source` of (image, class) whose ``images`` hold each
    image's boxes, and what was skipped while reading."""

    images: list[BoxImage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, images: list[BoxImage], classes: list[str], root, skipped=()) -> "BoxSource":
        samples = [(im.path, im.label) for im in images]
        ids = [im.id for im in images]
        return cls(samples, list(classes), str(root), "boxes", ids, images=images, skipped=list(skipped))

    def subset(self, indices) -> "BoxSource":
        indices = list(indices)
        return BoxSource.of([self.images[i] for i in indices], self.classes, self.root, self.skipped)

    def as_source(self) -> Source:
        """The classification view alone (path, image label)."""
        return Source(list(self.samples), self.classes, self.root, "boxes", list(self.ids))


def _check_on_bad(on_bad: str) -> None:
    if on_bad not in ON_BAD:
        raise VGGError(f"on_bad must be one of {', '.join(ON_BAD)}, got {on_bad!r}")


def _missing_images_hint(problems: list[str], root, found_any: bool) -> str:
    """When no image is found at all, the likely cause is the root the paths are read from, not
    the boxes (skipping them would leave nothing)."""
    if problems and not found_any and all("image not found" in p for p in problems):
        return (
            f"; the image paths are read relative to {root}: if the images are in another folder, "
            f"give it with --data-root (loc evaluate / loc merge: --root)"
        )
    return ""


def _finish(problems: list[str], on_bad: str, root=None, found_any: bool = True) -> None:
    """on_bad="fail": one error naming the first problem, the total, and the way out."""
    if problems and on_bad == "fail":
        more = f" ({len(problems)} problems in total)" if len(problems) > 1 else ""
        hint = _missing_images_hint(problems, root, found_any)
        raise VGGError(
            f"{problems[0]}{more}"
            + (hint or "; with --on-bad-box skip the bad boxes are dropped and the rest kept")
        )


class _ImageSizes:
    """Image sizes from the file headers (``Image.open`` reads no pixels), each file once."""

    def __init__(self):
        self._cache: dict[str, tuple[int, int] | str] = {}

    def get(self, path: Path) -> tuple[int, int] | str:
        """(width, height), or a reason why the image cannot be used."""
        key = str(path)
        if key not in self._cache:
            self._cache[key] = self._read(path)
        return self._cache[key]

    @staticmethod
    def _read(path: Path):
        if not path.is_file():
            return f"image not found: {path}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as img:
                    w, h = img.size
        except Exception as e:  # any decoder complaint means the file is unusable
            return f"not an image Pillow can read: {path} ({type(e).__name__})"
        if w < 1 or h < 1:
            return f"image has no pixels: {path}"
        return int(w), int(h)


def _number(text, name: str) -> float:
    try:
        v = float(str(text).strip())
    except ValueError:
        raise ValueError(f"{name} is not a number: {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} is not finite: {text!r}")
    return v


def _check_box(box: list[float], size: tuple[int, int]) -> list[float]:
    """A validated box within the image (clipped within BOX_TOLERANCE), or ValueError(reason)."""
    xmin, ymin, xmax, ymax = box
    if xmax <= xmin:
        raise ValueError(f"xmax <= xmin ({xmax:g} <= {xmin:g})")
    if ymax <= ymin:
        raise ValueError(f"ymax <= ymin ({ymax:g} <= {ymin:g})")
    w, h = size
    t = BOX_TOLERANCE
    if xmin < -t or ymin < -t or xmax > w + t or ymax > h + t:
        raise ValueError(f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is outside the {w}x{h} image")
    clipped = [min(max(xmin, 0.0), w), min(max(ymin, 0.0), h), min(max(xmax, 0.0), w), min(max(ymax, 0.0), h)]
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(f"box ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has no area inside the {w}x{h} image")
    return clipped


class _Collector:
    """Groups valid boxes by image (first-appearance order) and records what was dropped."""

    def __init__(self):
        self.order: list[str] = []
        self.rows: dict[str, list] = {}  # id -> [(box, class name)]
        self.info: dict[str, tuple[Path, tuple[int, int], str]] = {}  # id -> (path, size, where)
        self.problems: list[str] = []

    def see(self, image_id: str, path: Path, where: str) -> None:
        if image_id not in self.rows:
            self.order.append(image_id)
            self.rows[image_id] = []
            self.info[image_id] = (path, (0, 0), where)

    def add(self, image_id: str, size, box, name: str) -> None:
        path, _, where = self.info[image_id]
        self.info[image_id] = (path, size, where)
        self.rows[image_id].append((box, name))

    def build(self, classes: list[str]) -> tuple[list[BoxImage], list[str]]:
        index = {c: i for i, c in enumerate(classes)}
        images, dropped = [], []
        for image_id in self.order:
            rows = self.rows[image_id]
            path, size, where = self.info[image_id]
            if not rows:
                dropped.append(f"{where}: image {image_id} dropped: none of its boxes is usable")
                continue
            boxes = np.array([b for b, _ in rows], dtype=np.float64).reshape(-1, 4)
            cls = np.array([index[n] for _, n in rows], dtype=np.int64)
            images.append(BoxImage(str(path), int(cls[0]), boxes, cls, size, image_id))
        return images, dropped


def _result(col: _Collector, classes, found_names, on_bad: str, root, what) -> BoxSource:
    found_any = any(col.rows.values())
    _finish(col.problems, on_bad, root, found_any)
    classes = sorted(found_names) if classes is None else list(classes)
    images, dropped = col.build(classes)
    if not images:
        first = f" ({len(col.problems)} problems, first: {col.problems[0]})" if col.problems else ""
        raise VGGError(f"{what}: no usable boxes{first}{_missing_images_hint(col.problems, root, found_any)}")
    return BoxSource.of(images, classes, root, col.problems + dropped)


def read_box_csv(path, root=None, classes: list[str] | None = None, on_bad: str = "fail") -> BoxSource:
    """Read a box CSV (``path,wnid,xmin,ymin,xmax,ymax``; the header is optional, and when present
    its column order is used, ``label``/``class``/``name`` also naming the class column).

    Image paths are relative to `root` (default: the CSV's folder). The image's label is the
    class of its first (valid) row: ILSVRC images have one class, and a CSV that gives one image
    boxes of several classes makes the first one its classification label (the other boxes keep
    their own classes in ``box_classes``). Without `classes`, the classes are the sorted distinct
    names of the file -- equal to a folder Source's when every class has a box; pass the
    classifier's classes to be sure.
    """
    _check_on_bad(on_bad)
    path = Path(path)
    if not path.is_file():
        raise VGGError(f"box file not found: {path}")
    root = Path(root) if root is not None else path.parent
    known = None if classes is None else set(classes)
    sizes, col, names = _ImageSizes(), _Collector(), set()
    columns = list(range(6))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = True
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                    continue
                if first:
                    first = False
                    header = [c.strip().lower() for c in row]
                    if header[0] in ("path", "file", "filename", "image"):
                        columns = _header_columns(header, where)
                        n_fields = len(header)
                        continue
                    n_fields = 6
                if len(row) != n_fields:
                    col.problems.append(
                        f"{where}: expected {n_fields} fields ({','.join(CSV_COLUMNS)}), got {len(row)}"
                    )
                    continue
                rel, name = row[columns[0]].strip(), row[columns[1]].strip()
                if not rel or not name:
                    col.problems.append(f"{where}: empty {'path' if not rel else 'class'} field")
                    continue
                names.add(name)
                image_id = os.path.normpath(rel)
                image_path = root / image_id
                col.see(image_id, image_path, where)
                try:
                    box = [_number(row[c], n) for c, n in zip(columns[2:], CSV_COLUMNS[2:])]
                    if known is not None and name not in known:
                        raise ValueError(
                            f"unknown class {name!r} (not among the {len(classes)} classes, "
                            f"e.g. {', '.join(classes[:3])})"
                        )
                    size = sizes.get(image_path)
                    if isinstance(size, str):
                        raise ValueError(size)
                    box = _check_box(box, size)
                except ValueError as e:
                    col.problems.append(f"{where}: {e}")
                    continue
                col.add(image_id, size, box, name)
    except UnicodeDecodeError:
        raise VGGError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as e:
        raise VGGError(f"{path}: not a readable CSV file ({e})") from None
    return _result(col, classes, names, on_bad, root, path)


def _header_columns(header: list[str], where: str) -> list[int]:
    def find(names):
        for n in names:
            if n in header:
                return header.index(n)
        raise VGGError(f"{where}: header has no {names[0]!r} column (expected {','.join(CSV_COLUMNS)})")

    return [find(("path", "file", "filename", "image")), find(_CLASS_ALIASES)] + [
        find((c,)) for c in CSV_COLUMNS[2:]
    ]


def is_box_csv(path: Path) -> bool:
    """A CSV whose header names the box columns (``open_source`` reads it with :func:`read_box_csv`)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        for row in csv.reader(f):
            if row and not row[0].startswith("#"):
                return set(CSV_COLUMNS[2:]) <= {c.strip().lower() for c in row}
    return False


def is_annotation_folder(folder: Path, looked_at: int = 200) -> bool:
    """A folder of XML annotations (at most one level of sub-folders, as ILSVRC's training
    annotations): its first files are .xml and none is an image."""
    seen = []
    for sub in (folder, *sorted(p for p in folder.iterdir() if p.is_dir())[:5]):
        seen += [p.suffix.lower() for p in sorted(sub.iterdir())[:looked_at] if p.is_file()]
    return ".xml" in seen and not any(ext in IMAGE_EXTENSIONS for ext in seen)


# -- XML (ImageNet CLS-LOC, PASCAL VOC) ----------------------------------------------------------


class _Refused(Exception):
    pass


def _refuse_declarations(data: bytes) -> None:
    """Refuse any DOCTYPE or entity declaration before ElementTree sees the bytes: annotation
    files need none, and entities are how XML expands a small file into a huge one."""

    def refuse(*_):
        raise _Refused("DOCTYPE/entity declarations are not allowed in an annotation file")

    p = expat.ParserCreate()
    p.StartDoctypeDeclHandler = refuse
    p.EntityDeclHandler = refuse
    p.Parse(data, True)


def _parse_xml(path: Path) -> ET.Element:
    """The annotation's root element, or ValueError(reason)."""
    size = path.stat().st_size
    if size > MAX_XML_BYTES:
        raise ValueError(f"file is too large for an annotation ({size:,} bytes > {MAX_XML_BYTES:,})")
    data = path.read_bytes()
    try:
        _refuse_declarations(data)
        return ET.fromstring(data)
    except _Refused as e:
        raise ValueError(str(e)) from None
    except (expat.ExpatError, ET.ParseError) as e:
        raise ValueError(f"not well-formed XML ({e})") from None


def _find_image(image_dir: Path, sub: Path, filename: str, stem: str) -> Path | None:
    """The image file an annotation describes: ``<filename>`` as given (VOC), or with an image
    extension added (ImageNet's ``<filename>`` has none), or the XML's own stem; looked for
    beside the annotation's relative folder, then directly in `image_dir`."""
    names = []
    for base in (filename, stem):
        if base:
            names.append(base)
            names += [Path(base).stem + ext for ext in IMAGE_EXTENSIONS + (".JPEG", ".JPG", ".PNG")]
    for folder in dict.fromkeys((image_dir / sub, image_dir)):
        for name in names:
            candidate = folder / name
            if candidate.is_file():
                return candidate
    return None


def _voc_box(o, name: str, classes, base: int, scale: tuple[float, float], size) -> list[float]:
    """One ``<object>``'s box in max-exclusive pixels of the image file (inclusive corners from
    `base`, scaled from the XML's size to the file's); ValueError says what is wrong."""
    if not name:
        raise ValueError("object has no <name>")
    if classes is not None and name not in classes:
        raise ValueError(
            f"unknown class {name!r} (not among the {len(classes)} classes, e.g. {', '.join(classes[:3])})"
        )
    bb = o.find("bndbox")
    if bb is None:
        raise ValueError("object has no <bndbox>")
    x0, y0, x1, y1 = (_number(bb.findtext(k, ""), k) for k in CSV_COLUMNS[2:])
    sx, sy = scale
    return _check_box([(x0 - base) * sx, (y0 - base) * sy, (x1 - base + 1) * sx, (y1 - base + 1) * sy], size)


def read_voc_annotations(
    ann_dir, image_dir, classes: list[str] | None = None, on_bad: str = "fail", pixel_base: int | None = None
) -> BoxSource:
    """Read one XML annotation per image from `ann_dir` (searched recursively, in sorted order).

    Coordinates in these files are inclusive pixel indices: ``pixel_base=0`` for ImageNet
    CLS-LOC (0-based), ``1`` for PASCAL VOC (1-based); a box becomes
    ``(xmin - base, ymin - base, xmax - base + 1, ymax - base + 1)`` in our max-exclusive pixels.
    ``None`` (the default) decides per file: 1 for a file of a PASCAL VOC release (its ``<folder>``
    or ``<source>`` names VOC), else 0 (ImageNet's files name ILSVRC or a wnid).
    When the XML's ``<size>`` differs from the image file's size (a data set shipped resized with
    its original annotations), boxes are scaled to the file. The image's label is its first
    (valid) object's class. Problems are reported as ``file:object N: reason`` (N from 1).
    """
    _check_on_bad(on_bad)
    ann_dir, image_dir = Path(ann_dir), Path(image_dir)
    if not ann_dir.is_dir():
        raise VGGError(f"annotation folder not found: {ann_dir}")
    if not image_dir.is_dir():
        raise VGGError(f"image folder not found: {image_dir}")
    files = sorted(p for p in ann_dir.rglob("*") if p.suffix.lower() == ".xml" and p.is_file())
    if not files:
        raise VGGError(f"{ann_dir}: no .xml annotation files")
    sizes, col, names = _ImageSizes(), _Collector(), set()
    for xml_path in files:
        try:
            root_el = _parse_xml(xml_path)
        except ValueError as e:
            col.problems.append(f"{xml_path}: {e}")
            continue
        sub = xml_path.parent.relative_to(ann_dir)
        image_path = _find_image(image_dir, sub, (root_el.findtext("filename") or "").strip(), xml_path.stem)
        objects = root_el.findall("object")
        for o in objects:
            name = (o.findtext("name") or "").strip()
            if name:
                names.add(name)
        if image_path is None:
            col.problems.append(
                f"{xml_path}: image not found in {image_dir} (filename {root_el.findtext('filename')!r})"
            )
            continue
        size = sizes.get(image_path)
        if isinstance(size, str):
            col.problems.append(f"{xml_path}: {size}")
            continue
        try:
            sx, sy = _xml_scale(root_el, size)
        except ValueError as e:
            col.problems.append(f"{xml_path}: {e}")
            continue
        if not objects:
            col.problems.append(f"{xml_path}: no <object> elements")
            continue
        image_id = os.path.relpath(image_path, image_dir)
        col.see(image_id, image_path, str(xml_path))
        base = _pixel_base(root_el) if pixel_base is None else pixel_base
        for n, o in enumerate(objects, start=1):
            name = (o.findtext("name") or "").strip()
            try:
                box = _voc_box(o, name, classes, base, (sx, sy), size)
            except ValueError as e:
                col.problems.append(f"{xml_path}:object {n}: {e}")
                continue
            col.add(image_id, size, box, name)
    return _result(col, classes, names, on_bad, image_dir, ann_dir)


def _pixel_base(root_el: ET.Element) -> int:
    """1 for a PASCAL VOC annotation (the VOC devkit numbers pixels from 1), else 0 (ImageNet)."""
    said = [root_el.findtext(k) or "" for k in ("folder", "source/database", "source/annotation")]
    return 1 if any("VOC" in text for text in said) else 0


def _xml_scale(root_el: ET.Element, size: tuple[int, int]) -> tuple[float, float]:
    """Factors from the annotation's ``<size>`` to the image file's size (1, 1 when absent)."""
    el = root_el.find("size")
    if el is None or el.findtext("width") is None or el.findtext("height") is None:
        return 1.0, 1.0
    aw, ah = _number(el.findtext("width"), "size/width"), _number(el.findtext("height"), "size/height")
    if aw <= 0 or ah <= 0:
        return 1.0, 1.0  # VOC files sometimes say 0x0; the file's own size is then the truth
    return size[0] / aw, size[1] / ah


def split_by_image(source: BoxSource, fraction: float, seed: int = 0) -> tuple[BoxSource, BoxSource]:
    """A deterministic hold-out of `fraction` of the images (all of an image's boxes go to the
    same side), class-stratified by image label exactly as :func:`source.split_holdout`, which it
    uses: (kept, held out)."""
    ids = [im.id for im in source.images]
    if len(set(ids)) != len(ids):
        raise VGGError(f"{source.root}: image ids are not unique; cannot split by image")
    return split_holdout(source, fraction, seed)  # a BoxSource's subsets keep their boxes


def write_box_csv(source: BoxSource, path, force: bool = False) -> Path:
    """Write `source` in the box CSV format (ids relative to its root; read it back with
    ``read_box_csv(path, root=source.root)``): e.g. a fixed hold-out saved for later runs."""

    path = claim_output(path, "CSV", force)
    rows = ["path,wnid,xmin,ymin,xmax,ymax"]
    for im in source.images:
        for box, c in zip(im.boxes, im.box_classes):
            rows.append(",".join([im.id, source.classes[int(c)]] + [f"{v:.2f}" for v in box]))
    return write_text(path, "\n".join(rows) + "\n")
