"""A built-in synthetic data set: the demo's and the tests' data.

Each class is a shape with its own texture (``circle-stripes``, ``star-dots``, ...), drawn at a
random position, scale (35-80% of the image side) and rotation, on a cluttered
background of gradients, lines, blobs and bars, with sensor noise and real JPEG compression. The object's
main colour leans towards a hue of its class, with so much spread that neighbouring classes
overlap; shape and texture decide, at every scale, so a net has to learn them (a small VGG needs
several epochs) and training scale matters. The tight box of every object is written in
the CSV format of Imagenette's ``boxes-train.csv`` (``path,wnid,xmin,ymin,xmax,ymax``, pixels, max
exclusive).

Layout: ``OUT/train/<class>/<class>_<n>.jpg``, ``OUT/val/<class>/...``, ``OUT/boxes-train.csv``,
``OUT/boxes-val.csv``. Every image is a function of (seed, split, class, n) only.
"""

from __future__ import annotations

import colorsys
import csv
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import VGGError
from ..progress import progress as progress_bar

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond", "crescent", "arrow")
TEXTURES = ("stripes", "dots", "checker", "solid")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)


def class_names(k: int) -> list[str]:
    """k distinct (shape, texture) pairs; for k <= 10 the shapes are all different."""
    if not 1 <= k <= MAX_CLASSES:
        raise VGGError(f"synthetic classes must be between 1 and {MAX_CLASSES}, got {k}")
    names = []
    for i in range(k):
        shape = SHAPES[i % len(SHAPES)]
        texture = TEXTURES[(i + i // len(SHAPES)) % len(TEXTURES)]
        names.append(f"{shape}-{texture}")
    return names


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n, radii, phase=0.0):
        return [
            (
                cx + radii[i % len(radii)] * math.cos(angle + phase + 2 * math.pi * i / n),
                cy + radii[i % len(radii)] * math.sin(angle + phase + 2 * math.pi * i / n),
            )
            for i in range(n)
        ]

    if shape == "square":
        return ring(4, [r], math.pi / 4)
    if shape == "triangle":
        return ring(3, [r], -math.pi / 2)
    if shape == "star":
        return ring(10, [r, 0.42 * r], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [r])
    if shape == "diamond":
        return ring(4, [r, 0.55 * r])
    if shape == "cross":
        a, b = r, 0.33 * r
        pts = [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
    elif shape == "arrow":
        pts = [
            (-r, -0.25 * r),
            (0.2 * r, -0.25 * r),
            (0.2 * r, -0.65 * r),
            (r, 0),
            (0.2 * r, 0.65 * r),
            (0.2 * r, 0.25 * r),
            (-r, 0.25 * r),
        ]
    else:
        raise ValueError(shape)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]


def _mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> Image.Image:
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        d.ellipse([cx - 0.55 * r, cy - 0.55 * r, cx + 0.55 * r, cy + 0.55 * r], fill=0)
    elif shape == "crescent":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
        d.ellipse([cx + ox - 0.85 * r, cy + oy - 0.85 * r, cx + ox + 0.85 * r, cy + oy + 0.85 * r], fill=0)
    else:
        d.polygon(_polygon(shape, cx, cy, r, angle), fill=255)
    return m


def _texture(kind: str, size: int, rng: np.random.Generator, c1, c2, period: float) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, math.pi)
    if kind == "stripes":
        on = np.sin((x * math.cos(theta) + y * math.sin(theta)) * 2 * math.pi / period) > 0
    elif kind == "dots":
        u = (x * math.cos(theta) + y * math.sin(theta)) / period
        v = (-x * math.sin(theta) + y * math.cos(theta)) / period
        on = ((u - np.round(u)) ** 2 + (v - np.round(v)) ** 2) < 0.09
    elif kind == "checker":
        u = (x * math.cos(theta) + y * math.sin(theta)) / period
        v = (-x * math.sin(theta) + y * math.cos(theta)) / period
        on = (np.floor(u) + np.floor(v)) % 2 == 0
    else:
        on = np.zeros((size, size), bool)
    return np.where(on[..., None], np.asarray(c2, np.float32), np.asarray(c1, np.float32))


def _colour(rng):
    return rng.integers(0, 256, size=3)


def _class_colour(rng, class_index: int, k: int) -> np.ndarray:
    """The object's main colour: a hue that tends towards its class's own (classes 360/k degrees
    apart, sigma 25 degrees, so neighbours overlap), random saturation and brightness. Like the
    colour of a goldfish, it is a hint, not an answer: shape and texture settle the rest."""
    hue = (class_index / k + rng.normal(0, 25 / 360)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
    return (np.array([r, g, b]) * 255).astype(np.int64)


def _luma(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _contrasting(rng, c):
    """A second colour that differs in brightness too, so the texture survives in luma."""
    while True:
        d = _colour(rng)
        if np.abs(d.astype(int) - c.astype(int)).sum() > 180 and abs(_luma(d) - _luma(c)) > 60:
            return d


def draw_image(class_index: int, names: list[str], size: int, rng: np.random.Generator):
    """One image of class `class_index` and its object's box (xmin, ymin, xmax, ymax)."""
    shape, texture = names[class_index].split("-")
    # Background: a two-colour gradient plus clutter (lines, blobs, textured patches).
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a, b = _colour(rng).astype(np.float32), _colour(rng).astype(np.float32)
    t = x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1)
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    canvas = Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 7)):
        kind = rng.integers(0, 3)
        p = rng.uniform(0, size, 4)
        col = tuple(int(v) for v in _colour(rng))
        if kind == 0:
            d.line(list(p), fill=col, width=int(rng.integers(1, max(2, size // 24))))
        elif kind == 1:
            r = rng.uniform(0.03, 0.09) * size
            d.ellipse([p[0] - r, p[1] - r * rng.uniform(0.4, 1.0), p[0] + r, p[1] + r], fill=col)
        else:
            w = rng.uniform(0.04, 0.12) * size
            d.rectangle([p[0], p[1], p[0] + w, p[1] + w * rng.uniform(0.5, 1.5)], fill=col)
    # The object: scale, position, rotation and colours random; texture period scales with it.
    r = rng.uniform(0.35, 0.8) * size / 2
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
    c1 = _class_colour(rng, class_index, len(names))
    c2 = _contrasting(rng, c1)
    mask = _mask(shape, size, cx, cy, r, rng.uniform(0, 2 * math.pi))
    tex = _texture(texture, size, rng, c1, c2, period=max(4.0, r * rng.uniform(0.4, 0.6)))
    canvas.paste(Image.fromarray(tex.astype(np.uint8), "RGB"), (0, 0), mask)
    # A thin occluder now and then, so the object is not always whole.
    if rng.random() < 0.3:
        p = rng.uniform(0, size, 4)
        ImageDraw.Draw(canvas).line(
            list(p), fill=tuple(int(v) for v in _colour(rng)), width=max(1, size // 40)
        )
    arr = np.asarray(canvas, np.float32) + rng.normal(0, 4, (size, size, 3))
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    ys, xs = np.nonzero(np.asarray(mask))
    box = (
        (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        if len(xs)
        else (0, 0, size, size)
    )
    return image, box


def _make_one(job):
    out, split, split_id, class_index, n, names, size, seed = job
    rng = np.random.default_rng([seed, split_id, class_index, n])
    image, box = draw_image(class_index, names, size, rng)
    rel = f"{split}/{names[class_index]}/{names[class_index]}_{n:05d}.jpg"
    path = Path(out) / rel
    # 4:4:4: small images lose their colour detail to chroma subsampling.
    image.save(path, "JPEG", quality=int(rng.integers(80, 95)), subsampling=0)
    return rel, names[class_index], box


def make_synthetic(
    out,
    classes: int = 10,
    per_class: int = 100,
    val_per_class: int | None = None,
    size: int = 96,
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> dict:
    """Write the data set under `out` (which must not hold one already). Returns a summary dict."""
    out = Path(out)
    if size < 32:
        raise VGGError(f"synthetic image size must be >= 32 pixels, got {size}")
    if not 1 <= per_class <= 100_000:
        raise VGGError(f"--per-class must be between 1 and 100,000, got {per_class}")
    if size > 1024:
        raise VGGError(f"synthetic image size must be <= 1024 pixels, got {size}")
    if val_per_class is not None and not 1 <= val_per_class <= 100_000:
        raise VGGError(f"--val-per-class must be between 1 and 100,000, got {val_per_class}")
    if workers < 0:
        raise VGGError(f"--workers must be >= 0, got {workers}")
    names = class_names(classes)
    val_per_class = max(1, per_class // 4) if val_per_class is None else val_per_class
    if out.exists() and not out.is_dir():
        raise VGGError(f"{out} is a file; give a new folder for --out")
    if out.exists() and any(out.iterdir()):
        raise VGGError(f"{out} exists and is not empty; choose a new folder")
    jobs = []
    for split_id, (split, count) in enumerate((("train", per_class), ("val", val_per_class))):
        for c, name in enumerate(names):
            (out / split / name).mkdir(parents=True, exist_ok=True)
            jobs += [(str(out), split, split_id, c, n, names, size, seed) for n in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_make_one, jobs, chunksize=32))
    else:
        results = [_make_one(j) for j in progress_bar(jobs, len(jobs), "synth", progress)]
    for split in ("train", "val"):
        with open(out / f"boxes-{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "wnid", "xmin", "ymin", "xmax", "ymax"])
            for rel, name, box in results:
                if rel.startswith(split + "/"):
                    w.writerow([rel, name, *box])
    return dict(
        root=str(out), classes=names, train=per_class * classes, val=val_per_class * classes, size=size
    )
