"""Training-set colour statistics, computed once and cached as JSON (as MatConvNet does): the mean
RGB value subtracted from every input (§2.1) and the eigen-decomposition of the 3x3 RGB
covariance used by the PCA colour shift (§3.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import VGGError
from ..fileio import read_json, write_json
from ..progress import progress as progress_bar
from .loaders import SourceImages
from .source import Source

PIXELS_PER_IMAGE = 65_536  # a regular subsample of about this many pixels per image


class _PixelMoments(SourceImages):
    # Full-resolution decoding: a JPEG decoded at a reduced size (DCT scaling) is a blurred image
    # whose colour covariance is smaller (half the top eigenvalue on textured images), which
    # would weaken the PCA colour shift of §3.1.
    min_side = None

    def unreadable(self, index, reason):
        return {"error": (self.name(index), reason)}

    def read(self, index, img):
        # A subsample on a regular grid, not an average, so pixel variance is kept.
        step = max(2, int(np.ceil(np.sqrt(img.width * img.height / PIXELS_PER_IMAGE))))
        # Subsampled first, converted after: a large image is never held as float64 whole.
        a = np.asarray(img)[::step, ::step].reshape(-1, 3).astype(np.float64)
        return {"sum": a.sum(0), "outer": a.T @ a, "count": a.shape[0]}


def compute_stats(
    source: Source, max_images: int = 10_000, seed: int = 0, workers: int = 0, progress: bool = False
) -> dict:
    """Mean RGB and RGB covariance eigen-pairs (0-255 units) over a deterministic sample."""
    n = len(source)
    if n == 0:
        raise VGGError("cannot compute statistics of an empty data set")
    order = np.arange(n)
    if n > max_images:
        order = np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))
    loader = torch.utils.data.DataLoader(_PixelMoments(source, order), batch_size=None, num_workers=workers)
    total, outer, count, bad = np.zeros(3), np.zeros((3, 3)), 0, []
    it = progress_bar(loader, len(order), "stats", progress)
    for item in it:
        if "error" in item:
            bad.append(item["error"])
            continue
        total += np.asarray(item["sum"])
        outer += np.asarray(item["outer"])
        count += int(item["count"])
    if count == 0:
        raise VGGError("no readable images to compute statistics from")
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(cov)
    top = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[top], eigvec[:, top]
    return dict(
        mean_rgb=mean.tolist(),
        cov_rgb=cov.tolist(),
        pca_eigval=eigval.tolist(),
        pca_eigvec=eigvec.tolist(),
        images=len(order) - len(bad),
        pixels=count,
        unreadable=[f"{p}: {r}" for p, r in bad],
        sample_seed=seed,
        value_range=255,
    )


def save_stats(path, stats: dict) -> Path:
    return write_json(path, stats)


def load_stats(path) -> dict:
    """A statistics file of ``vggnet stats``, checked: the mean and the eigen-pairs are finite
    numbers of the right shapes (a hand-edited or foreign file is refused here, by name, before a
    run writes anything)."""

    path = Path(path)
    stats = read_json(path, "statistics file")
    for key in ("mean_rgb", "pca_eigval", "pca_eigvec"):
        if key not in stats:
            raise VGGError(f"{path}: not a statistics file (no {key!r}); make one with `vggnet stats`")
    rows = [stats["mean_rgb"], stats["pca_eigval"]] + (
        stats["pca_eigvec"] if isinstance(stats["pca_eigvec"], list) else [None]
    )
    if len(rows) != 5 or not all(_finite_triple(r) for r in rows):
        raise VGGError(
            f"{path}: a statistics file holds mean_rgb and pca_eigval (3 finite numbers each) and "
            f"pca_eigvec (3x3); this one does not: make it again with `vggnet stats`"
        )
    return stats


def _finite_triple(row) -> bool:
    return (
        isinstance(row, list)
        and len(row) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in row)
    )
