"""The one path from uint8 pixels to a module's float32 outputs, under a device policy: training-time
validation, the test protocols and the box evaluation all call it."""

from __future__ import annotations

import torch

from .device import DevicePolicy


def forward(module, normalizer, policy: DevicePolicy, images: torch.Tensor) -> torch.Tensor:
    """`module`'s float32 outputs on uint8 images; `normalizer` maps them to the net's input
    (``data.transforms.Normalizer``)."""
    x = normalizer(images.to(policy.device, non_blocking=True), channels_last=policy.channels_last)
    with policy.autocast():
        out = module(x)
    return out.float()
