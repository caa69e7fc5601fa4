"""Evaluation: the paper's protocols (§3.2, §4), metrics, posteriors, fusion and tables."""

from .metrics import topk_errors, topk_wrong
from .protocols import ALL_PROTOCOLS, PROTOCOLS, Evaluator

__all__ = ["topk_errors", "topk_wrong", "ALL_PROTOCOLS", "PROTOCOLS", "Evaluator"]
