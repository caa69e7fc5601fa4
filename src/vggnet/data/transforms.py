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

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import VGGError
from .images import load_rgb

RESAMPLE = Image.BILINEAR  # antialiased when shrinking (Pillow uses the full filter support)
COLOUR_ALPHA_STD = 0.1  # §3.1 / Krizhevsky et al. 2012: alpha_i ~ N(0, 0.1)


def parse_scale(value) -> tuple[int, int]:
    """``256`` or ``"256"`` -> (256, 256); ``"256:512"`` or (256, 512) -> (256, 512)."""
    if isinstance(value, (tuple, list)):
        lo, hi = value
    elif isinstance(value, int):
        lo = hi = value
    else:
        text = str(value).strip()
        try:
            lo, hi = (int(v) for v in text.split(":")) if ":" in text else (int(text),) * 2
        except ValueError:
            raise VGGError(f"scale must be S or Smin:Smax (integers), got {value!r}") from None
    return int(lo), int(hi)


def check_scale(scale, crop_size: int) -> tuple[int, int]:
    lo, hi = parse_scale(scale)
    if lo > hi:
        raise VGGError(f"Smin must be <= Smax, got {lo}:{hi}")
    if lo < crop_size:
        raise VGGError(f"training scale S={lo} is smaller than the crop size {crop_size} (§3.1: S >= crop)")
    return lo, hi


def scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    """Isotropic rescale so that the smallest side is exactly `side`."""
    if width <= height:
        return side, max(side, int(round(height * side / width)))
    return max(side, int(round(width * side / height))), side


class TrainTransform:
    """path, numpy Generator -> uint8 crop (crop, crop, 3), and what was drawn."""

    def __init__(self, scale, crop_size: int, flip: bool = True):
        self.smin, self.smax = check_scale(scale, crop_size)
        self.crop_size, self.flip = crop_size, flip

    def __call__(self, path, rng: np.random.Generator):
        s = int(rng.integers(self.smin, self.smax + 1))
        img = load_rgb(path, min_side=s)
        return self.apply(img, s, rng)

    def apply(self, img: Image.Image, s: int, rng: np.random.Generator):
        c = self.crop_size
        w, h = scaled_size(img.width, img.height, s)
        x = int(rng.integers(0, w - c + 1))
        y = int(rng.integers(0, h - c + 1))
        fx, fy = img.width / w, img.height / h
        out = img.resize((c, c), RESAMPLE, box=(x * fx, y * fy, (x + c) * fx, (y + c) * fy))
        arr = np.array(out, dtype=np.uint8)  # a writable copy
        flipped = bool(self.flip and rng.random() < 0.5)
        if flipped:
            arr = arr[:, ::-1]
        alpha = rng.normal(0.0, COLOUR_ALPHA_STD, 3).astype(np.float32)  # §3.1 colour shift, per image
        return np.ascontiguousarray(arr), dict(S=s, x=x, y=y, size=(w, h), flipped=flipped, alpha=alpha)


def rescale(img: Image.Image, side: int) -> Image.Image:
    """The whole image, isotropically rescaled to smallest side `side` (test scale Q, §3.2)."""
    w, h = scaled_size(img.width, img.height, side)
    return img if (w, h) == img.size else img.resize((w, h), RESAMPLE)


def grid_positions(width: int, height: int, crop_size: int, n: int = 5) -> list[tuple[int, int]]:
    """Top-left corners of the n x n crop grid, evenly spaced from the top-left to the
    bottom-right corner inclusive (SPEC §3 Decision)."""
    if min(width, height) < crop_size:
        raise VGGError(f"image {width}x{height} is smaller than the crop {crop_size}")
    xs = np.linspace(0, width - crop_size, n).round().astype(int)
    ys = np.linspace(0, height - crop_size, n).round().astype(int)
    return [(int(x), int(y)) for y in ys for x in xs]


def multicrop(image: torch.Tensor, crop_size: int, n: int = 5) -> torch.Tensor:
    """(3, H, W) uint8 image at one scale -> (2*n*n, 3, crop, crop): the grid and its flips."""
    _, h, w = image.shape
    crops = torch.stack([image[:, y:y + crop_size, x:x + crop_size]
                         for x, y in grid_positions(w, h, crop_size, n)])
    return torch.cat([crops, crops.flip(-1)])


class Normalizer(nn.Module):
    """uint8 NCHW RGB batch -> the network's float input, on the batch's device.

    The preprocessing (SPEC §6) says how the weights expect their input: channel order, value
    range (255 for ours and Caffe's, 1 for torchvision's) and mean/std in those units. In training
    the PCA colour shift of Krizhevsky et al. is added first: ``P @ (alpha * lambda)`` with alpha ~
    N(0, 0.1) per image. Decision: lambda are the eigenvalues of the RGB covariance with pixel
    values scaled to [0, 1] (the widely used convention, shifts of a few grey levels), so in our
    0-255 units the shift is ``P @ (alpha * lambda_255 / 255)``.
    """

    def __init__(self, preprocessing: dict):
        super().__init__()
        p = preprocessing
        scale = float(p.get("value_range", 255.0)) / 255.0
        mean = torch.tensor(p.get("mean", [0.0, 0.0, 0.0]), dtype=torch.float32)
        std = torch.tensor(p.get("std", [1.0, 1.0, 1.0]), dtype=torch.float32)
        self.bgr = p.get("channel_order", "RGB").upper() == "BGR"
        # y = x * scale / std - mean / std, folded into one multiply-add per pixel.
        self.register_buffer("mul", (scale / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("add", (-mean / std).view(1, 3, 1, 1), persistent=False)
        eigval = p.get("pca_eigval")
        eigvec = p.get("pca_eigvec")
        self.has_pca = eigval is not None and eigvec is not None
        if self.has_pca:
            self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32) / 255.0, persistent=False)
            self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32), persistent=False)

    def colour_shift(self, alpha: torch.Tensor) -> torch.Tensor:
        """(n, 3) alphas ~ N(0, 0.1) -> (n, 3) RGB shifts in 0-255 units (columns of eigvec are
        the eigenvectors). Alphas are drawn per image on the CPU side, from the image's own seed."""
        alpha = alpha.to(self.eigval.device, dtype=torch.float32, non_blocking=True)
        return (alpha * self.eigval) @ self.eigvec.T

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None, channels_last: bool = False) -> torch.Tensor:
        x = x.to(self.mul.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.float()
        if alpha is not None and self.has_pca:
            x = x + self.colour_shift(alpha)[:, :, None, None]
        if self.bgr:
            x = x.flip(1)
        return x * self.mul + self.add
