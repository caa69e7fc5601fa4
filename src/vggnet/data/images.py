"""Decoding one image file into an RGB picture, robustly.

Every odd file a real data set holds is either converted (greyscale, CMYK, palette and RGBA PNG,
16-bit) or refused with an :class:`ImageReadError` that names the path and the reason (zero bytes,
truncated, not an image, too many pixels). JPEGs much larger than needed are decoded at a reduced
size by the decoder's DCT scaling (1/2, 1/4 or 1/8), which is where most of the decode time goes.

JPEGs are decoded by libjpeg-turbo through ``simplejpeg`` when it is installed (measured 1.6x faster
than through Pillow on ImageNet JPEGs, and pixel-identical: both are libjpeg-turbo with the same
settings); everything else, CMYK JPEGs and any file it refuses go through Pillow. The picture keeps
the file's own size in ``info["source_size"]``, so that the geometry of a crop or a rescale -- and
so the boxes of App. A -- does not depend on the decoder or on a reduced-size decode.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import VGGError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
# Pillow's own decompression-bomb limit is ~179 MP; real photographs stay far below this one.
MAX_PIXELS = 300_000_000
Image.MAX_IMAGE_PIXELS = None  # our own check below, with a clear reason


class ImageReadError(VGGError):
    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit / 32-bit greyscale: scale the full range to 8 bits (convert("L") would clip).
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite transparent pixels on mid-grey, close to the data mean, not on black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (128, 128, 128, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


try:
    import simplejpeg
except ImportError:  # Pillow decodes everything then
    simplejpeg = None


def source_size(img: Image.Image) -> tuple[int, int]:
    """The size of the file the picture was decoded from (a reduced-size decode is smaller)."""
    return img.info.get("source_size", img.size)


def _reduction(w: int, h: int, min_side: int | None) -> int:
    """The DCT-scaling divisor (1, 2, 4 or 8) that keeps the smaller side >= min_side."""
    k = 1
    while min_side is not None and k < 8 and min(w, h) >= 2 * k * min_side:
        k *= 2
    return k


def _turbo(data: bytes, min_side: int | None) -> Image.Image | None:
    """A JPEG's bytes through libjpeg-turbo (simplejpeg), or None for Pillow to try."""
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray", "RGB") or w * h > MAX_PIXELS or w < 1 or h < 1:
        return None  # CMYK/YCCK, or sizes Pillow's path refuses with its own reason
    k = _reduction(w, h, min_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=-(-h // k), min_width=-(-w // k))
    except Exception:  # a damaged file: Pillow decides and names the reason
        return None
    img = Image.frombuffer("RGB", (arr.shape[1], arr.shape[0]), arr, "raw", "RGB", 0, 1)  # no copy
    img.info["source_size"] = (w, h)
    return img


def load_rgb(path, min_side: int | None = None) -> Image.Image:
    """Decode the file `path` to an RGB image (see :func:`decode_rgb`)."""
    try:
        if os.path.getsize(path) == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as e:
        raise ImageReadError(path, str(e) or type(e).__name__) from None
    return decode_rgb(data, path, min_side)


def decode_rgb(data: bytes, where, min_side: int | None = None) -> Image.Image:
    """Decode an image file's bytes to an RGB image; `where` names it in errors (a path, or a
    member of a shard). With `min_side`, a JPEG may be decoded at a reduced size whose smaller
    side is still >= `min_side` (DCT scaling: 1/2, 1/4 or 1/8)."""
    path = where
    try:
        if not data:
            raise ImageReadError(path, "empty file (0 bytes)")
        if simplejpeg is not None and len(data) < 2**31 and data[:3] == b"\xff\xd8\xff":
            img = _turbo(data, min_side)
            if img is not None:
                return img
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w < 1 or h < 1:
                    raise ImageReadError(path, f"image has no pixels ({w}x{h})")
                if w * h > MAX_PIXELS:
                    raise ImageReadError(path, f"too large ({w}x{h} > {MAX_PIXELS:,} pixels)")
                k = _reduction(w, h, min_side)
                if img.format == "JPEG" and k > 1:
                    img.draft("RGB", (math.ceil(w / k), math.ceil(h / k)))
                if getattr(img, "n_frames", 1) > 1:
                    img.seek(0)
                img.load()
                rgb = _to_rgb(img)
                rgb.info["source_size"] = (w, h)
                return rgb
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            path, "not an image Pillow can identify (wrong extension or corrupt header)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason:
            reason = f"truncated image data ({reason})"
        raise ImageReadError(path, reason) from None
    except Exception as e:  # a decoder bug must not kill a run either
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None
