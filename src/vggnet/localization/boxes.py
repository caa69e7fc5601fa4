"""Boxes and their parameterisation for localisation (Appendix A).

Conventions, used by every function of ``vggnet.localization``:

- a box is ``(xmin, ymin, xmax, ymax)`` in pixels, float, max exclusive (width = xmax - xmin);
  a set of boxes is a float64 numpy array of shape (N, 4). Torch tensors and lists are accepted
  as inputs and converted; outputs are always numpy float64 (the boxes are few per image, and the
  merge and the metrics run on the CPU).
- a box *parameter* vector is ``(cx, cy, w, h)`` relative to the input window that produced it
  (the training crop, or at dense test time the crop-sized window of one output location), in
  units of the crop side (decision), so one regressor serves every position and scale.
"""

from __future__ import annotations

import numpy as np

DENSE_STRIDE = 32  # five 2x2 poolings (§2): one output location per 32 input pixels


def as_boxes(boxes) -> np.ndarray:
    """Anything box-like (list, numpy array, torch tensor) -> a float64 (N, 4) array (a copy).
    An empty input gives a (0, 4) array."""
    if hasattr(boxes, "detach"):  # a torch tensor, possibly on an accelerator
        boxes = boxes.detach().cpu().numpy()
    a = np.array(boxes, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {a.shape}")
    return a


def _as_xy(xy, n: int) -> np.ndarray:
    """One (x, y) pair or one per box -> an array broadcastable against (n, 2)."""
    if hasattr(xy, "detach"):
        xy = xy.detach().cpu().numpy()
    a = np.asarray(xy, dtype=np.float64)
    if a.shape == (2,) or (a.ndim == 2 and a.shape == (n, 2)):
        return a
    raise ValueError(f"window corner must be (x, y) or one (x, y) per box ({n}), got shape {a.shape}")


def widths_heights(boxes) -> np.ndarray:
    """(N, 2) widths and heights; negative extents count as 0."""
    b = as_boxes(boxes)
    return np.maximum(b[:, 2:] - b[:, :2], 0.0)


def area(boxes) -> np.ndarray:
    """(N,) areas in square pixels (0 for empty or inverted boxes)."""
    return widths_heights(boxes).prod(axis=1)


def iou(a, b) -> np.ndarray:
    """Pairwise intersection over union, an (N, M) float64 matrix in [0, 1].

    A pair whose union is empty (two zero-area boxes) has IoU 0, never NaN: a degenerate box
    cannot localise anything.
    """
    a, b = as_boxes(a), as_boxes(b)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.maximum(hi - lo, 0.0).prod(axis=2)
    union = area(a)[:, None] + area(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def clip(boxes, width: float, height: float) -> np.ndarray:
    """Boxes clipped to the image ``[0, width] x [0, height]``."""
    b = as_boxes(boxes)
    b[:, 0::2] = b[:, 0::2].clip(0.0, width)
    b[:, 1::2] = b[:, 1::2].clip(0.0, height)
    return b


# -- parameterisation (decision) -------------------------------------------------------


def encode(boxes, window_xy, crop: float) -> np.ndarray:
    """Pixel boxes -> (N, 4) parameters ``(cx, cy, w, h)`` relative to the window whose top-left
    corner is `window_xy` (one (x, y), or one per box) and whose side is `crop` pixels:
    ``cx = (box_cx - x0) / crop``, ``w = box_w / crop`` (likewise y, h)."""
    b = as_boxes(boxes)
    xy = _as_xy(window_xy, len(b))
    out = np.empty_like(b)
    out[:, :2] = ((b[:, :2] + b[:, 2:]) / 2.0 - xy) / crop
    out[:, 2:] = (b[:, 2:] - b[:, :2]) / crop
    return out


def decode(params, window_xy, crop: float) -> np.ndarray:
    """The inverse of :func:`encode`: (N, 4) parameters at a window -> pixel boxes in the
    coordinates the window lives in. Negative predicted sizes give an empty (zero-width) box."""
    p = as_boxes(params)
    xy = _as_xy(window_xy, len(p))
    c = p[:, :2] * crop + xy
    half = np.maximum(p[:, 2:], 0.0) * crop / 2.0
    return np.concatenate([c - half, c + half], axis=1)


# -- training: source-image boxes through TrainTransform's geometry (§3.1) ----------------------


def boxes_through_transform(boxes, src_size, drawn: dict, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Source-image boxes -> the training crop's pixel coordinates, and which rows survived.

    The geometry is exactly :meth:`vggnet.data.transforms.TrainTransform.apply`'s: the source
    ``src_size = (W, H)`` is rescaled isotropically to ``drawn["size"] = (w, h)`` (factors w/W and
    h/H per axis, as the resampling uses), the crop is ``[x, x + crop) x [y, y + crop)`` of that
    rescaled image, then mirrored about the crop's vertical centre line when ``drawn["flipped"]``.
    Boxes are then clipped to the crop (decision: a crop keeps the boxes it overlaps,
    clipped); a box with no visible area is dropped.

    `src_size` is the size of the image the boxes refer to (the file's own size, e.g.
    ``BoxImage.size``). TrainTransform may decode a large JPEG at a reduced size (DCT scaling);
    that changes the decoded size by a rounding of under one decoded pixel, so the mapping stays
    within a fraction of a pixel of the crop's content.

    Returns ``(crop_boxes (K, 4), kept (K,) int64 indices into boxes)``.
    """
    out = clip(crop_frame(boxes, src_size, drawn, crop), crop, crop)
    visible = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    kept = np.flatnonzero(visible)
    return out[kept], kept


def crop_frame(boxes, src_size, drawn: dict, crop: int) -> np.ndarray:
    """Source-image boxes in the training crop's pixel frame, whole (not clipped): a box may
    extend beyond the crop, where its object does."""
    b = as_boxes(boxes)
    W, H = src_size
    w, h = drawn["size"]
    out = np.empty_like(b)
    out[:, 0::2] = b[:, 0::2] * (w / W) - drawn["x"]
    out[:, 1::2] = b[:, 1::2] * (h / H) - drawn["y"]
    if drawn.get("flipped", False):
        # A pixel column u of the crop becomes column crop-1-u, so the edge coordinate x becomes
        # crop - x, and the left and right edges swap.
        out[:, [0, 2]] = crop - out[:, [2, 0]]
    return out


def choose_target(boxes_in_crop) -> int | None:
    """The index of the regression target among the crop's (clipped) boxes: the box with the
    largest visible area (decision: "the box of the crop's object"); ties go to the first.
    None when no box has visible area (the crop shows no object)."""
    a = area(boxes_in_crop)
    if len(a) == 0 or a.max() <= 0:
        return None
    return int(np.argmax(a))


def training_target(boxes, box_classes, src_size, drawn: dict, crop: int):
    """The regression target of one training crop: ``(params (4,), class index)``, or None when
    no ground-truth box is visible in the crop. The object is the one whose box, clipped to the
    crop, has the largest visible area; the target is that object's *whole* box in the crop's
    frame, which may extend beyond the crop (decision: a window that sees part of an object
    predicts where the whole object is, so that boxes from windows and scales that each see a
    part can be merged into the object's box, App. A protocol 2; a target clipped to the crop
    could never describe an object larger than the crop). The class is the object's own,
    which selects the 4 outputs a per-class regressor (PCR) is penalised on."""
    in_crop, kept = boxes_through_transform(boxes, src_size, drawn, crop)
    t = choose_target(in_crop)
    if t is None:
        return None
    whole = crop_frame(as_boxes(boxes)[kept[t] : kept[t] + 1], src_size, drawn, crop)
    return encode(whole, (0.0, 0.0), crop)[0], int(np.asarray(box_classes)[kept[t]])


# -- testing: dense windows back to the original image (Appendix A, protocol 2) ------------------


def dense_windows(map_h: int, map_w: int, stride: int = DENSE_STRIDE) -> np.ndarray:
    """Top-left corners (x, y) of the crop-sized input window of every location of a dense
    (map_h, map_w) output map, row-major: location (i, j) is row ``i * map_w + j`` and its window
    starts at ``(stride * j, stride * i)`` of the rescaled image (decision). This matches
    flattening a (4, H, W) box map with ``permute(1, 2, 0).reshape(-1, 4)``."""
    i, j = np.meshgrid(np.arange(map_h), np.arange(map_w), indexing="ij")
    return np.stack([j.ravel() * stride, i.ravel() * stride], axis=1).astype(np.float64)


def rescale_factors(src_size, rescaled_size) -> tuple[float, float]:
    """Per-axis factors (w / W, h / H) of an isotropic rescale from `src_size` (W, H) to
    `rescaled_size` (w, h) -- e.g. ``vggnet.data.transforms.scaled_size(W, H, Q)`` at test scale Q."""
    (W, H), (w, h) = src_size, rescaled_size
    return w / W, h / H


def window_to_image(
    params, window_xy, crop: float, scale_xy, flip_width: float | None = None, clip_to=None
) -> np.ndarray:
    """Box parameters predicted at windows of a rescaled image -> boxes in original image pixels.

    `window_xy`: the window's top-left corner (one, or one per row, e.g. :func:`dense_windows`);
    `scale_xy`: the rescale factors (rescaled / original, per axis, :func:`rescale_factors`);
    `flip_width`: the rescaled image's width when the prediction was made on its horizontal flip
    (the flip is undone before the rescale); `clip_to`: an optional original (W, H) to clip to.
    The inverse of :func:`boxes_through_transform` for an unflipped, unclipped window.
    """
    b = decode(params, window_xy, crop)
    if flip_width is not None:
        b[:, [0, 2]] = flip_width - b[:, [2, 0]]
    sx, sy = scale_xy
    b[:, 0::2] /= sx
    b[:, 1::2] /= sy
    if clip_to is not None:
        b = clip(b, *clip_to)
    return b
