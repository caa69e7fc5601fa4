"""The test protocols of §3.2 and §4, each mapping one image to soft-max class posteriors.

- ``center``: the image rescaled to Q, one crop_size centre crop (the common baseline).
- ``dense``: the fully-convolutional net over the whole image rescaled to Q; the class score map
  is averaged over space, then soft-max (SPEC §3 Decision); posteriors of the image and its flip
  are averaged.
- ``multicrop``: per Q, the 5x5 grid of crops from corner to corner, each also flipped (50 crops),
  posteriors averaged. The 50 crops are one batch.
- ``dense+multicrop``: the average of the two (complementary boundary conditions, §3.2).

Multi-scale evaluation averages these posteriors over the scales Q (§4.2).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..data.transforms import Normalizer, multicrop

PROTOCOLS = ("center", "dense", "multicrop", "dense+multicrop")


def center_crop(image: torch.Tensor, crop: int) -> torch.Tensor:
    _, h, w = image.shape
    y, x = (h - crop) // 2, (w - crop) // 2
    return image[:, y:y + crop, x:x + crop]


class Evaluator:
    """Runs a model under a protocol on uint8 (3, H, W) images already rescaled to Q."""

    def __init__(self, model, normalizer: Normalizer, device, amp: bool = False, channels_last: bool = False,
                 crop_batch: int = 50):
        self.model, self.norm, self.device = model, normalizer, torch.device(device)
        self.amp, self.channels_last, self.crop_batch = amp, channels_last, crop_batch
        self.crop = model.crop_size

    def _autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        return self.norm(batch.to(self.device, non_blocking=True), channels_last=self.channels_last)

    @torch.no_grad()
    def center(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) equal-sized images -> (N, C) posteriors of the centre crops."""
        crops = torch.stack([center_crop(im, self.crop) for im in images])
        with self._autocast():
            logits = self.model(self._input(crops))
        return F.softmax(logits.float(), dim=1)

    @torch.no_grad()
    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) equal-sized images -> (N, C): spatially averaged scores, soft-max, and the
        average with the horizontally flipped image's posteriors."""
        n = images.shape[0]
        both = torch.cat([images, images.flip(-1)])
        with self._autocast():
            score_map = self.model.dense(self._input(both))
        probs = F.softmax(score_map.float().mean(dim=(2, 3)), dim=1)
        return (probs[:n] + probs[n:]) / 2

    @torch.no_grad()
    def multicrop(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) image -> (C,) mean posterior of its 50 grid crops (25 positions x 2 flips)."""
        crops = multicrop(image, self.crop)
        total = 0
        for chunk in crops.split(self.crop_batch):
            with self._autocast():
                logits = self.model(self._input(chunk))
            total = total + F.softmax(logits.float(), dim=1).sum(0)
        return total / crops.shape[0]
