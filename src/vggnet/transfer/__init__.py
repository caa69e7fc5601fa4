"""Deep features + linear SVM on small target data sets (Appendix B).

Pipeline: :func:`compute_features` (per-scale descriptors of a fixed net) -> :func:`save_features`
-> (:func:`stack_nets` for late fusion) -> :func:`run_splits` (Caltech-style, mean class recall)
or :func:`run_multilabel` (VOC-style, mean AP) -> :func:`save_results` -> :func:`table11`.
"""

from ..data.multilabel import MultiLabelSource, multilabel_csv, source_labels
from .descriptors import (
    COMBINE_MODES,
    combine_scales,
    compute_features,
    descriptor_matrix,
    features_from_checkpoint,
    l2_normalise,
    pooled_descriptor,
)
from .features_file import load_features, save_features, stack_nets, subset_features
from .metrics import auc_ap, confusion_matrix, mean_class_recall, voc07_ap
from .protocols import AP_KINDS, load_results, run_multilabel, run_splits, save_confusion_png, save_results
from .report import table11
from .splits import load_splits, random_holdout, random_splits, save_splits, stratified_holdout
from .svm import DEFAULT_CS, SVMChoice, fit_svm, select_C

__all__ = [
    "MultiLabelSource",
    "multilabel_csv",
    "source_labels",
    "COMBINE_MODES",
    "combine_scales",
    "compute_features",
    "descriptor_matrix",
    "features_from_checkpoint",
    "l2_normalise",
    "pooled_descriptor",
    "load_features",
    "save_features",
    "stack_nets",
    "subset_features",
    "auc_ap",
    "confusion_matrix",
    "mean_class_recall",
    "voc07_ap",
    "AP_KINDS",
    "load_results",
    "run_multilabel",
    "run_splits",
    "save_confusion_png",
    "save_results",
    "table11",
    "load_splits",
    "random_holdout",
    "random_splits",
    "save_splits",
    "stratified_holdout",
    "DEFAULT_CS",
    "SVMChoice",
    "fit_svm",
    "select_C",
]
