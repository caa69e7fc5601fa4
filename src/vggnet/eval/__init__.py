"""Evaluation: the paper's protocols (§3.2, §4), metrics, fusion and tables."""
from .metrics import topk_errors, topk_wrong
from .protocols import PROTOCOLS, Evaluator, center_crop

__all__ = ["topk_errors", "topk_wrong", "PROTOCOLS", "Evaluator", "center_crop"]
