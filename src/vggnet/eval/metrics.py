"""Top-k classification error (§4): the ground truth is outside the k highest-scored classes."""

from __future__ import annotations

import torch


def topk_errors(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Error rates in percent, e.g. {"top1_err": 29.6, "top5_err": 10.4}; k is capped at the number
    of classes (top-5 of a 3-class problem is 0)."""
    counts = topk_wrong(scores, labels, ks)
    n = max(int(labels.numel()), 1)
    return {f"top{k}_err": 100.0 * counts[k] / n for k in ks}


def topk_wrong(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[int, int]:
    """How many rows have their label outside the top k, for each k."""
    out = {}
    labels = labels.to(scores.device).view(-1, 1)
    for k in ks:
        k_eff = min(k, scores.shape[1])
        top = scores.topk(k_eff, dim=1).indices
        out[k] = int((~(top == labels).any(dim=1)).sum())
    return out
