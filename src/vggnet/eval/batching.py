"""Batching test images of different sizes without padding (padding would change what a dense
pass averages over, §3.2): equal-sized inputs are grouped per key (protocol or scale, and size)
and run together when a group reaches the batch size or the pixel budget, so a large Q stays in
bounded memory and small images share a batch."""

from __future__ import annotations

from collections import defaultdict

import torch


class SizeBatcher:
    """Collects equal-sized inputs per key and runs them together."""

    def __init__(self, run, batch_size: int, pixel_budget: int):
        self.run, self.batch_size, self.pixel_budget = run, batch_size, pixel_budget
        self.pending: dict = defaultdict(list)

    def add(self, key, index: int, tensor: torch.Tensor):
        items = self.pending[key]
        items.append((index, tensor))
        pixels = tensor.shape[-1] * tensor.shape[-2] * len(items)
        if len(items) >= self.batch_size or pixels >= self.pixel_budget:
            self.flush(key)

    def flush(self, key=None):
        for k in [key] if key is not None else list(self.pending):
            items = self.pending.pop(k, [])
            if items:
                self.run(k, [i for i, _ in items], torch.stack([t for _, t in items]))
