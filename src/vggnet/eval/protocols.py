"""The test protocols of §3.2 and §4, each a function from a batch of equal-sized images (uint8,
already rescaled to one test scale Q) to soft-max class posteriors.

- ``center``: one crop_size centre crop (the common baseline, §4.1).
- ``dense``: the fully-convolutional net over the whole image; the class score map is averaged
  over space, then soft-max (decision: §3.2 sum-pools the score map); posteriors of the image and
  its flip averaged.
- ``multicrop``: the 5x5 grid of crops from corner to corner, each also flipped (50 crops per
  image, one batch), posteriors averaged.

Two combination steps act on the posteriors after the pass, never inside it: the average over
the test scales (multi-scale evaluation, §4.2) and the average of protocols (``dense+multicrop``:
complementary boundary conditions, §4.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.transforms import Normalizer, center_crop, multicrop
from ..runtime.device import DevicePolicy
from ..runtime.forward import forward

COMBINED = {"dense+multicrop": ("dense", "multicrop")}  # §4.3


def with_flips(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (2N, 3, H, W): the images, then their horizontal flips (§3.2)."""
    return torch.cat([images, images.flip(-1)])


def dense_posteriors(score_map: torch.Tensor) -> torch.Tensor:
    """§3.2's dense rule on the (2N, C, h, w) score maps of N images followed by their N flips
    (:func:`with_flips`): scores averaged over space, soft-max, and the image's posteriors averaged
    with its flip's -> (N, C). Every class ranking from a dense score map goes through here."""
    n = score_map.shape[0] // 2
    probs = F.softmax(score_map.mean(dim=(2, 3)), dim=1)
    return (probs[:n] + probs[n:]) / 2


class Evaluator:
    """A net, its input normalisation and a device policy, applied under each protocol."""

    def __init__(self, model, normalizer: Normalizer, policy, crop_batch: int = 50):
        if not isinstance(policy, DevicePolicy):  # a device name: the plain fp32 policy
            policy = DevicePolicy(torch.device(policy))
        self.model, self.norm, self.policy, self.crop_batch = model, normalizer, policy, crop_batch
        self.crop = model.crop_size

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        return self.norm(
            batch.to(self.policy.device, non_blocking=True), channels_last=self.policy.channels_last
        )

    @torch.no_grad()
    def center(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) equal-sized images -> (N, C) posteriors of the centre crops."""
        return F.softmax(forward(self.model, self.norm, self.policy, center_crop(images, self.crop)), dim=1)

    @torch.no_grad()
    def dense(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) equal-sized images -> (N, C): spatially averaged scores, soft-max, and the
        average with the horizontally flipped image's posteriors."""
        return dense_posteriors(forward(self.model.dense, self.norm, self.policy, with_flips(images)))

    @torch.no_grad()
    def multicrop(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) image -> (C,) mean posterior of its 50 grid crops (25 positions x 2 flips)."""
        crops = multicrop(image, self.crop)
        total = 0
        for chunk in crops.split(self.crop_batch):
            total = total + F.softmax(forward(self.model, self.norm, self.policy, chunk), dim=1).sum(0)
        return total / crops.shape[0]

    def multicrops(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.multicrop(image) for image in images])


PROTOCOLS = {"center": Evaluator.center, "dense": Evaluator.dense, "multicrop": Evaluator.multicrops}
ALL_PROTOCOLS = tuple(PROTOCOLS) + tuple(COMBINED)


def passes_for(protocols) -> list[str]:
    """The protocols the network must run for the requested ones (a combination runs its parts)."""
    needed = set()
    for p in protocols:
        needed.update(COMBINED.get(p, (p,)))
    return [p for p in PROTOCOLS if p in needed]


def average_scales(per_scale: dict) -> torch.Tensor:
    """§4.2: the posteriors averaged over the test scales Q."""
    return torch.stack(list(per_scale.values())).mean(0)


def combine(name: str, probs: dict) -> torch.Tensor:
    """§4.3: a combined protocol is the average of its parts' posteriors."""
    parts = COMBINED[name]
    return sum(probs[p] for p in parts) / len(parts)
