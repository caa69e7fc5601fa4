"""Linear SVMs on the deep descriptors (Appendix B), with scikit-learn's ``LinearSVC``.

- Single-label data: one-vs-rest, the predicted class is the highest-scoring one.
- Multi-label data: one binary SVM per class, positives (1) against negatives (-1); images
  labelled 0 ("difficult" only) are left out of that class's training, as they are of its AP.

The regularisation C is chosen on training data only (Appendix B: "20% of the training images are a
validation set"): :func:`select_C` receives nothing but the training arrays, splits off 20%
(stratified per class for single-label data), fits each C of the grid on the other 80% and keeps
the C with the best mean class recall (single-label) or mean area-under-curve AP (multi-label;
less quantised than the 11-point AP on a small validation set). On equal scores the smallest C
wins (the most regularised). The SVM is then refitted on the whole training set.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from ..errors import VGGError
from .metrics import auc_ap, mean_class_recall
from .splits import random_holdout, stratified_holdout

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
MAX_ITER = 10_000


@dataclass(frozen=True)
class SVMChoice:
    """How C is chosen and the SVM fitted (the module doc): the C grid, the held-out fraction of the
    training images, the seed of that hold-out and of the solver, the solver's iteration cap."""

    Cs: tuple = field(default=DEFAULT_CS)
    val_fraction: float = 0.2
    seed: int = 0
    max_iter: int = MAX_ITER

    def for_split(self, i: int) -> SVMChoice:
        """The choice for the i-th random split: its own seed, so each split can be rerun alone."""
        return replace(self, seed=self.seed + i)


DEFAULT_CHOICE = SVMChoice()


class _Constant:
    """A class's scorer when its training images are all of one sign (possible only inside the 80%
    part used for choosing C): a constant +1 or -1."""

    def __init__(self, value: float):
        self.value = value

    def decision_function(self, x):
        return np.full(len(x), self.value)


class PerClassSVM:
    """Multi-label classifier: one binary linear SVM per class. ``decision_function`` -> (N, C)."""

    def __init__(self, estimators: list):
        self.estimators = estimators

    def decision_function(self, x) -> np.ndarray:
        return np.stack([e.decision_function(x) for e in self.estimators], axis=1)


def _linear_svc(C: float, seed: int, max_iter: int):
    return LinearSVC(C=C, dual="auto", max_iter=max_iter, random_state=seed)


def _check_xy(x, y, kind):
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    if kind not in ("single", "multi"):
        raise VGGError(f"label kind must be 'single' or 'multi', got {kind!r}")
    if x.ndim != 2 or len(x) != len(y) or (kind == "multi") != (y.ndim == 2):
        raise VGGError(f"{kind}-label SVM: descriptors {x.shape} do not fit labels {y.shape}")
    return x, y


def fit_linear_svm(
    x, y, kind: str, C: float, seed: int = 0, max_iter: int = MAX_ITER, classes=None, final: bool = True
) -> dict:
    """One fit at a given C. Returns dict(model, seconds, converged). With `final`, a multi-label
    class without positive (or negative) training images is an error naming the class."""

    x, y = _check_xy(x, y, kind)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if kind == "single":
            if len(np.unique(y)) < 2:
                raise VGGError("the training set holds a single class; an SVM needs two or more")
            model = _linear_svc(C, seed, max_iter).fit(x, y)
        else:
            estimators = []
            for c in range(y.shape[1]):
                keep = y[:, c] != 0
                target = y[keep, c] > 0
                if target.all() or not target.any():
                    if final:
                        name = classes[c] if classes is not None else f"#{c}"
                        raise VGGError(
                            f"class {name!r} has {'no negative' if target.any() else 'no positive'} "
                            f"training image; its SVM cannot be trained"
                        )
                    estimators.append(_Constant(1.0 if target.any() else -1.0))
                else:
                    estimators.append(_linear_svc(C, seed, max_iter).fit(x[keep], target))
            model = PerClassSVM(estimators)
    not_converged = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return dict(model=model, seconds=time.perf_counter() - t0, converged=not_converged == 0)


def predict_scores(model, x) -> np.ndarray:
    """(N, C) class scores (multi-label) or (N,) predicted class indices (single-label)."""
    x = np.asarray(x, dtype=np.float32)
    if isinstance(model, PerClassSVM):
        return model.decision_function(x)
    return model.predict(x)


def validation_score(model, x, y, kind: str, n_classes: int) -> float:
    """Mean class recall (single-label) or mean AUC AP (multi-label) of `model` on (x, y)."""
    if kind == "single":
        return mean_class_recall(y, predict_scores(model, x), n_classes)["mean"]
    return auc_ap(predict_scores(model, x), y)["mean"]


def select_C(
    x_train, y_train, kind: str, choice: SVMChoice = DEFAULT_CHOICE, n_classes: int | None = None
) -> dict:
    """Choose C from training data alone (see the module doc). Returns dict(C, val_scores
    {C: score}, val_metric, fit_images, val_images, seconds)."""
    x, y = _check_xy(x_train, y_train, kind)
    Cs, val_fraction, seed = sorted({float(c) for c in choice.Cs}), choice.val_fraction, choice.seed
    if not Cs or min(Cs) <= 0:
        raise VGGError(f"the C grid must hold positive values, got {Cs}")
    n_classes = n_classes or (y.shape[1] if kind == "multi" else int(y.max()) + 1)
    t0 = time.perf_counter()
    if len(Cs) == 1:
        return dict(C=Cs[0], val_scores={}, val_metric=None, fit_images=len(x), val_images=0, seconds=0.0)
    part = (
        stratified_holdout(y, val_fraction, seed)
        if kind == "single"
        else random_holdout(len(y), val_fraction, seed)
    )
    fit, val = np.asarray(part["fit"]), np.asarray(part["val"])
    if len(val) == 0:
        raise VGGError(f"too few training images ({len(y)}) to hold out {val_fraction:.0%} for choosing C")
    scores = {}
    for C in Cs:
        m = fit_linear_svm(x[fit], y[fit], kind, C, seed, choice.max_iter, final=False)["model"]
        scores[C] = validation_score(m, x[val], y[val], kind, n_classes)
    valid = {C: s for C, s in scores.items() if not np.isnan(s)}
    if not valid:
        raise VGGError(
            "the validation part of the training set has no positive image of any class; C cannot be chosen"
        )
    best = max(valid.values())
    chosen = min(C for C, s in valid.items() if s == best)
    metric = "mean class recall" if kind == "single" else "mean AP (area under curve)"
    return dict(
        C=chosen,
        val_scores=scores,
        val_metric=metric,
        fit_images=len(fit),
        val_images=len(val),
        seconds=time.perf_counter() - t0,
    )


def fit_svm(
    x_train,
    y_train,
    kind: str,
    choice: SVMChoice = DEFAULT_CHOICE,
    n_classes: int | None = None,
    classes=None,
) -> dict:
    """Choose C on 20% of the training set, then refit on all of it. Returns the selection dict
    plus ``model``, ``fit_seconds`` and ``converged``."""
    chosen = select_C(x_train, y_train, kind, choice, n_classes=n_classes)
    fitted = fit_linear_svm(
        x_train, y_train, kind, chosen["C"], choice.seed, choice.max_iter, classes=classes, final=True
    )
    return dict(chosen, model=fitted["model"], fit_seconds=fitted["seconds"], converged=fitted["converged"])
