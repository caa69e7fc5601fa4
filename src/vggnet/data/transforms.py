"""The paper's image transforms (§3.1 training, §3.2 testing).

Training (one crop per image per presentation): rescale isotropically so the smallest side is S
(fixed, or an integer drawn uniformly from [Smin, Smax] for scale jittering), take a random
crop_size x crop_size crop, flip horizontally with p = 0.5. The CPU side stays uint8; the float
conversion, the PCA colour shift and the mean subtraction run where they are cheapest, on the
training device, in :class:`Normalizer`.

The crop is computed in the rescaled image's coordinates and only that box of the source is
resampled (Pillow's ``resize(box=...)`` reads the same source pixels the full rescale would), so
a crop costs crop_size^2 output pixels instead of S x S'.

Testing: the whole image rescaled to Q (dense evaluation) and the regular 5x5 grid of crops from
corner to corner, each also flipped (multi-crop evaluation).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import VGGError
from .images import source_size
from .preprocessing import Preprocessing

RESAMPLE = Image.BILINEAR  # antialiased when shrinking (Pillow uses the full filter support)
COLOUR_ALPHA_STD = 0.1  # §3.1 / Krizhevsky et al. 2012: alpha_i ~ N(0, 0.1)
MAX_SIDE = 4096  # the largest S or Q accepted: a 4096-pixel side already costs ~0.5 GB per image in the net
MAX_SCALED_PIXELS = 24_000_000  # a rescaled test image larger than this (a panorama at a large Q) is refused


class Scale(NamedTuple):
    """The training scale S of §3.1: (Smin, Smax), equal for single-scale training, a range for
    scale jittering. Written ``256`` or ``256:512`` in recipes and on the command line."""

    lo: int
    hi: int

    @property
    def jittered(self) -> bool:
        return self.lo != self.hi

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}:{self.hi}"

    def paper(self) -> str:
        """The paper's notation: ``256`` or ``[256;512]``."""
        return str(self.lo) if self.lo == self.hi else f"[{self.lo};{self.hi}]"

    @classmethod
    def parse(cls, value) -> "Scale":
        """``256``, ``"256"`` -> (256, 256); ``"256:512"``, ``[256, 512]`` -> (256, 512)."""
        if isinstance(value, (tuple, list)) and len(value) == 2:
            lo, hi = value
        elif isinstance(value, int) and not isinstance(value, bool):
            lo = hi = value
        else:
            text = str(value).strip()
            try:
                lo, hi = (int(v) for v in text.split(":")) if ":" in text else (int(text),) * 2
            except ValueError:
                raise VGGError(f"scale must be S or Smin:Smax (integers), got {value!r}") from None
        if isinstance(lo, bool) or isinstance(hi, bool) or not all(isinstance(v, int) for v in (lo, hi)):
            raise VGGError(f"scale must be S or Smin:Smax (integers), got {value!r}")
        return cls(int(lo), int(hi))


def check_scale(scale, crop_size: int) -> Scale:
    s = Scale.parse(scale)
    if s.lo > s.hi:
        raise VGGError(f"Smin must be <= Smax, got {s.lo}:{s.hi}")
    if s.lo < crop_size:
        raise VGGError(f"training scale S={s.lo} is smaller than the crop size {crop_size} (§3.1: S >= crop)")
    if s.hi > MAX_SIDE:
        raise VGGError(f"training scale S={s.hi} is larger than {MAX_SIDE} pixels")
    return s


def default_scales(train_scale, crop: int, multi: bool = False) -> list[int]:
    """The test scales Q of §4.1 (one) and §4.2 (three) for a net trained at `train_scale`, both
    scaled by crop/224 so that small-crop nets follow the same rule. Fixed S: {S} or {S-32, S,
    S+32}; jittered S: {(Smin+Smax)/2} or {Smin, (Smin+Smax)/2, Smax}; unknown S: the paper's
    S = 256. No Q is smaller than the crop: where S-32 would be (a net trained at S = crop), the
    three scales are {S, S+32, S+64}, still three."""
    lo, hi = Scale.parse(train_scale) if train_scale is not None else (round(256 * crop / 224),) * 2
    step = max(1, round(32 * crop / 224))
    if lo == hi:
        qs = [lo - step, lo, lo + step] if multi else [lo]
        if multi and qs[0] < crop:
            qs = [max(crop, lo), max(crop, lo) + step, max(crop, lo) + 2 * step]
    else:
        qs = [lo, (lo + hi) // 2, hi] if multi else [(lo + hi) // 2]
    return sorted({max(crop, q) for q in qs})


def parse_scales(text: str) -> list[int]:
    """``--scales 256,384,512`` -> [256, 384, 512] (sorted, each once)."""
    try:
        qs = [int(v) for v in str(text).replace(" ", "").split(",") if v]
    except ValueError:
        raise VGGError(f"--scales takes comma-separated integers, e.g. 256,384,512; got {text!r}") from None
    if not qs:
        raise VGGError("--scales is empty")
    return sorted(set(qs))


def resolve_test_scales(scales, multi_scale: bool, train_scale, crop: int, default=None) -> list[int]:
    """The test scales Q of a run, by one rule for evaluate, predict, loc evaluate and features:
    `scales` as given (comma-separated text or integers), sorted, each once; otherwise the
    command's own `default` where it has one (features: Appendix B's), else §4.1's single scale or
    §4.2's three (`multi_scale`) from the training scale (:func:`default_scales`). Giving both
    `scales` and `multi_scale` is refused; every Q lies between the crop size (every protocol
    takes crops of that size from the rescaled image) and MAX_SIDE."""
    if scales and multi_scale:
        raise VGGError("give --scales or --multi-scale, not both")
    if isinstance(scales, str):
        qs = parse_scales(scales)
    elif scales:
        if not all(isinstance(q, int) and not isinstance(q, bool) for q in scales):
            raise VGGError(f"test scales must be integers, got {list(scales)!r}")
        qs = sorted(set(scales))
    else:
        qs = sorted(set(default)) if default else default_scales(train_scale, crop, multi_scale)
    if qs[0] < crop:
        raise VGGError(
            f"test scale Q={qs[0]} is smaller than the crop size {crop}: every protocol takes "
            f"crops of that size from the image rescaled to Q (§3.2)"
        )
    if qs[-1] > MAX_SIDE:
        raise VGGError(f"test scale Q={qs[-1]} is larger than {MAX_SIDE} pixels")
    return qs


def scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    """Isotropic rescale so that the smallest side is exactly `side`."""
    if width <= height:
        return side, max(side, int(round(height * side / width)))
    return max(side, int(round(width * side / height))), side


class TrainTransform:
    """The training crop of §3.1: draw S (``draw_scale``), decode the image at about S, then
    ``apply``: image, S, numpy Generator -> uint8 crop (crop, crop, 3), and what was drawn."""

    def __init__(self, scale, crop_size: int, flip: bool = True):
        self.smin, self.smax = check_scale(scale, crop_size)
        self.crop_size, self.flip = crop_size, flip

    def draw_scale(self, rng: np.random.Generator) -> int:
        """S for one image: fixed, or uniform in [Smin, Smax] (scale jittering)."""
        return int(rng.integers(self.smin, self.smax + 1))

    def apply(self, img: Image.Image, s: int, rng: np.random.Generator):
        c = self.crop_size
        src = source_size(img)  # the geometry is the file's, whatever size it was decoded at
        w, h = scaled_size(*src, s)
        x = int(rng.integers(0, w - c + 1))
        y = int(rng.integers(0, h - c + 1))
        fx, fy = img.width / w, img.height / h
        out = img.resize((c, c), RESAMPLE, box=(x * fx, y * fy, (x + c) * fx, (y + c) * fy))
        arr = np.array(out, dtype=np.uint8)  # a writable copy
        flipped = bool(self.flip and rng.random() < 0.5)
        if flipped:
            arr = arr[:, ::-1]
        alpha = rng.normal(0.0, COLOUR_ALPHA_STD, 3).astype(np.float32)  # §3.1 colour shift, per image
        return np.ascontiguousarray(arr), dict(
            S=s, x=x, y=y, size=(w, h), src_size=src, flipped=flipped, alpha=alpha
        )


def rescale(img: Image.Image, side: int) -> Image.Image:
    """The whole image, isotropically rescaled to smallest side `side` (test scale Q, §3.2). An
    extreme aspect ratio whose rescaled image would exceed MAX_SCALED_PIXELS is refused."""
    w, h = scaled_size(*source_size(img), side)
    if w * h > MAX_SCALED_PIXELS:
        raise VGGError(
            f"a {source_size(img)[0]}x{source_size(img)[1]} image rescaled to Q={side} would be {w}x{h} "
            "pixels, "
            f"over the limit of {MAX_SCALED_PIXELS:,}"
        )
    return img if (w, h) == img.size else img.resize((w, h), RESAMPLE)


def center_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    """The crop x crop centre of a (..., H, W) image (§4.1's single-crop baseline)."""
    h, w = image.shape[-2:]
    y, x = (h - crop) // 2, (w - crop) // 2
    return image[..., y : y + crop, x : x + crop]


def grid_positions(width: int, height: int, crop_size: int, n: int = 5) -> list[tuple[int, int]]:
    """Top-left corners of the n x n crop grid, evenly spaced from the top-left to the
    bottom-right corner inclusive (decision: §3.2 does not place the grid)."""
    if min(width, height) < crop_size:
        raise VGGError(f"image {width}x{height} is smaller than the crop {crop_size}")
    xs = np.linspace(0, width - crop_size, n).round().astype(int)
    ys = np.linspace(0, height - crop_size, n).round().astype(int)
    return [(int(x), int(y)) for y in ys for x in xs]


def multicrop(image: torch.Tensor, crop_size: int, n: int = 5) -> torch.Tensor:
    """(3, H, W) uint8 image at one scale -> (2*n*n, 3, crop, crop): the grid and its flips."""
    _, h, w = image.shape
    crops = torch.stack(
        [image[:, y : y + crop_size, x : x + crop_size] for x, y in grid_positions(w, h, crop_size, n)]
    )
    return torch.cat([crops, crops.flip(-1)])


class Normalizer(nn.Module):
    """uint8 NCHW RGB batch -> the network's float input, on the batch's device.

    The preprocessing says how the weights expect their input: channel order, value
    range (255 for ours and Caffe's, 1 for torchvision's) and mean/std in those units. In training
    the PCA colour shift of Krizhevsky et al. is added first: ``P @ (alpha * lambda)`` with alpha ~
    N(0, 0.1) per image. Decision: lambda are the eigenvalues of the RGB covariance with pixel
    values scaled to [0, 1] (the widely used convention, shifts of a few grey levels), so in our
    0-255 units the shift is ``P @ (alpha * lambda_255 / 255)``.
    """

    def __init__(self, preprocessing):
        super().__init__()
        p = (
            preprocessing
            if isinstance(preprocessing, Preprocessing)
            else Preprocessing.from_dict(preprocessing)
        )
        scale = p.value_range / 255.0
        mean = torch.tensor(p.mean, dtype=torch.float32)
        std = torch.tensor(p.std, dtype=torch.float32)
        self.bgr = p.channel_order == "BGR"
        # y = x * scale / std - mean / std, folded into one multiply-add per pixel.
        self.register_buffer("mul", (scale / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("add", (-mean / std).view(1, 3, 1, 1), persistent=False)
        self.has_pca = p.has_pca
        if self.has_pca:
            self.register_buffer(
                "eigval", torch.tensor(p.pca_eigval, dtype=torch.float32) / 255.0, persistent=False
            )
            self.register_buffer("eigvec", torch.tensor(p.pca_eigvec, dtype=torch.float32), persistent=False)

    def colour_shift(self, alpha: torch.Tensor) -> torch.Tensor:
        """(n, 3) alphas ~ N(0, 0.1) -> (n, 3) RGB shifts in 0-255 units (columns of eigvec are
        the eigenvectors). Alphas are drawn per image on the CPU side, from the image's own seed."""
        alpha = alpha.to(self.eigval.device, dtype=torch.float32, non_blocking=True)
        return (alpha * self.eigval) @ self.eigvec.T

    def forward(
        self, x: torch.Tensor, alpha: torch.Tensor | None = None, channels_last: bool = False
    ) -> torch.Tensor:
        x = x.to(self.mul.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.float()
        if alpha is not None and self.has_pca:
            x = x + self.colour_shift(alpha)[:, :, None, None]
        if self.bgr:
            x = x.flip(1)
        return x * self.mul + self.add
