"""The two evaluation protocols of Appendix B, from saved features (no network runs).

- :func:`run_splits` (Caltech-101/256 style, single-label): per random split, an SVM trained on
  the split's training images (C chosen on 20% of them), mean class recall on its test images;
  mean ± standard deviation over the splits.
- :func:`run_multilabel` (PASCAL VOC style): one SVM per class trained on the training features,
  mean AP on the test features, by both AP definitions, each labelled.

Results are JSON-ready dicts; every figure in them is a percentage, as in the paper's Table 11.
Decision: the spread over splits is the sample standard deviation (ddof = 1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..errors import VGGError
from ..fileio import atomic_write, claim_folder, write_json, write_text
from ..tables import Column, columns, render
from .descriptors import descriptor_matrix
from .metrics import auc_ap, confusion_matrix, mean_class_recall, voc07_ap
from .svm import DEFAULT_CHOICE, SVMChoice, fit_svm, predict_scores

RESULTS, PER_CLASS, CONFUSION = "results.json", "per_class.csv", "confusion.png"
AP_KINDS = ("VOC07 11-point", "area under curve")


def _pct(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else 100.0 * float(v)


def setting_name(features: dict, combine: str, scales) -> str:
    """A row label for tables: nets (fused with &), layer, scale combination and Q."""
    nets = "&".join(str(n.get("arch") or "?") for n in features["nets"])
    qs = ",".join(str(q) for q in scales)
    return (
        f"{nets} {features.get('layer') or '?'} {combine} Q={qs}"
        if len(scales) > 1
        else f"{nets} {features.get('layer') or '?'} Q={qs}"
    )


def _describe(features: dict, combine: str, scales, dataset) -> dict:
    data = features.get("data")
    return dict(
        dataset=dataset or (Path(str(data)).name if data else "?"),
        data=data,
        features=features.get("path"),
        setting=setting_name(features, combine, scales),
        nets=[
            {k: n.get(k) for k in ("arch", "checkpoint", "layer", "dim", "file")} for n in features["nets"]
        ],
        layer=features.get("layer"),
        combine=combine,
        scales=list(scales),
        classes=list(features["classes"]),
    )


def _scales(features, scales):
    return list(features["scales"]) if scales is None else sorted({int(q) for q in scales})


def run_splits(
    features: dict,
    splits,
    combine: str = "stack",
    scales=None,
    choice: SVMChoice = DEFAULT_CHOICE,
    dataset: str | None = None,
) -> dict:
    """Caltech-style evaluation over `splits` (dicts of train/test indices into the features)."""
    if features["label_kind"] != "single":
        raise VGGError("random-split evaluation is for single-label data; use the multi-label protocol (mAP)")
    qs = _scales(features, scales)
    x = descriptor_matrix(features, combine, qs)
    y = np.asarray(features["labels"])
    n, n_classes = len(y), len(features["classes"])
    rows = []
    for i, split in enumerate(splits):
        train, test = np.asarray(split["train"], dtype=np.int64), np.asarray(split["test"], dtype=np.int64)
        if (
            len(train) == 0
            or len(test) == 0
            or min(train.min(), test.min()) < 0
            or max(train.max(), test.max()) >= n
        ):
            raise VGGError(f"split {i}: indices must be non-empty and in [0, {n}) for these {n} images")
        if np.intersect1d(train, test).size:
            raise VGGError(f"split {i}: {np.intersect1d(train, test).size} images are in both train and test")
        svm = fit_svm(x[train], y[train], "single", choice.for_split(i), n_classes, features["classes"])
        pred = predict_scores(svm["model"], x[test])
        mcr = mean_class_recall(y[test], pred, n_classes)
        rows.append(
            dict(
                split=i,
                mean_class_recall=_pct(mcr["mean"]),
                per_class_recall=[_pct(v) for v in mcr["per_class"]],
                test_counts=mcr["counts"],
                accuracy=_pct(float(np.mean(pred == y[test]))),
                train_images=len(train),
                test_images=len(test),
                C=svm["C"],
                val_metric=svm["val_metric"],
                val_scores={str(c): _pct(s) for c, s in svm["val_scores"].items()},
                fit_seconds=svm["fit_seconds"],
                select_seconds=svm["seconds"],
                converged=svm["converged"],
                confusion=confusion_matrix(y[test], pred, n_classes).tolist(),
            )
        )
    if not rows:
        raise VGGError("no splits to evaluate")
    values = np.array([r["mean_class_recall"] for r in rows])
    summary = dict(
        metric="mean class recall",
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        splits=len(rows),
    )
    return dict(
        _describe(features, combine, qs, dataset),
        kind="single",
        **_choice_record(choice),
        summary=summary,
        per_split=rows,
    )


def _choice_record(choice: SVMChoice) -> dict:
    """How C was chosen, as the results file records it."""
    return dict(seed=choice.seed, val_fraction=choice.val_fraction, Cs=[float(c) for c in choice.Cs])


def _check_pair(train: dict, test: dict) -> None:
    names = f"{train.get('path') or 'training features'} and {test.get('path') or 'test features'}"
    if train["label_kind"] != "multi" or test["label_kind"] != "multi":
        raise VGGError(f"the multi-label protocol needs multi-label features ({names})")
    if train["classes"] != test["classes"]:
        raise VGGError(f"{names} have different classes")
    if [n["dim"] for n in train["nets"]] != [n["dim"] for n in test["nets"]] or [
        n.get("layer") for n in train["nets"]
    ] != [n.get("layer") for n in test["nets"]]:
        raise VGGError(f"{names} come from different nets or layers")
    shared = set(train["ids"]) & set(test["ids"])
    if shared:
        raise VGGError(
            f"{names} share {len(shared)} images (e.g. {sorted(shared)[0]}): the test set must be unseen"
        )


def run_multilabel(
    train_features: dict,
    test_features: dict,
    combine: str = "average",
    scales=None,
    choice: SVMChoice = DEFAULT_CHOICE,
    dataset: str | None = None,
) -> dict:
    """VOC-style evaluation: per-class SVMs on `train_features` (C chosen on 20% of them), mean
    AP on `test_features` by both definitions (:data:`AP_KINDS`)."""
    _check_pair(train_features, test_features)
    qs = _scales(train_features, scales)
    x_train = descriptor_matrix(train_features, combine, qs)
    x_test = descriptor_matrix(test_features, combine, qs)
    y_train, y_test = np.asarray(train_features["labels"]), np.asarray(test_features["labels"])
    classes = list(train_features["classes"])
    svm = fit_svm(x_train, y_train, "multi", choice, len(classes), classes)
    scores = predict_scores(svm["model"], x_test)
    metrics = {}
    for ap in (voc07_ap(scores, y_test), auc_ap(scores, y_test)):
        metrics[ap["kind"]] = dict(
            mean=_pct(ap["mean"]),
            per_class=[_pct(v) for v in ap["per_class"]],
            classes_scored=ap["classes_scored"],
            no_positives=[classes[c] for c in ap["no_positives"]],
        )
    return dict(
        _describe(train_features, combine, qs, dataset),
        kind="multi",
        **_choice_record(choice),
        test_features=test_features.get("path"),
        summary=dict(metric="mean AP", mean=metrics["VOC07 11-point"]["mean"], ap_kind="VOC07 11-point"),
        metrics=metrics,
        C=svm["C"],
        val_metric=svm["val_metric"],
        val_scores={str(c): _pct(s) for c, s in svm["val_scores"].items()},
        train_images=len(y_train),
        test_images=len(y_test),
        test_positives=[int(v) for v in (y_test > 0).sum(axis=0)],
        test_ignored=[int(v) for v in (y_test == 0).sum(axis=0)],
        fit_seconds=svm["fit_seconds"],
        select_seconds=svm["seconds"],
        converged=svm["converged"],
    )


# -- files ----------------------------------------------------------------------------------------
def save_confusion_png(cm, classes, path, title: str | None = None) -> Path:
    """A confusion matrix as a PNG: rows = true class, columns = predicted; shading is the row-
    normalised fraction (so unequal class sizes compare), cells show counts when they fit."""

    cm = np.asarray(cm)
    k = len(classes)
    if cm.shape != (k, k):
        raise VGGError(f"confusion matrix {cm.shape} does not fit {k} classes")
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = min(40.0, max(4.0, 0.32 * k + 2.5))
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=90, fontsize=8)
    ax.set_yticks(range(k), [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if k <= 30:
        for r in range(k):
            for c in range(k):
                if cm[r, c]:
                    ax.text(
                        c,
                        r,
                        str(int(cm[r, c])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if frac[r, c] > 0.5 else "black",
                    )
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def per_class_table(result: dict) -> tuple[list[dict], list]:
    """Per-class figures (percent): recall per split and its mean, or AP by both definitions."""
    classes = result["classes"]
    if result["kind"] == "single":
        splits = result["per_split"]
        cols = (
            columns("class", ("test images (split 0)", "n"))
            + [Column(f"recall split {r['split']}", f"s{r['split']}", "{:.2f}") for r in splits]
            + columns(("mean recall", "mean", "{:.2f}"))
        )
        rows = []
        for c, name in enumerate(classes):
            values = [r["per_class_recall"][c] for r in splits]
            present = [v for v in values if v is not None]
            rows.append(
                dict(
                    {
                        "class": name,
                        "n": splits[0]["test_counts"][c],
                        "mean": float(np.mean(present)) if present else None,
                    },
                    **{f"s{r['split']}": v for r, v in zip(splits, values)},
                )
            )
        return rows, cols
    cols = columns("class", ("test positives", "pos"), ("test ignored (difficult)", "ign")) + [
        Column(f"AP {k}", k, "{:.2f}") for k in AP_KINDS
    ]
    rows = [
        dict(
            {"class": name, "pos": result["test_positives"][c], "ign": result["test_ignored"][c]},
            **{k: result["metrics"][k]["per_class"][c] for k in AP_KINDS},
        )
        for c, name in enumerate(classes)
    ]
    return rows, cols


def per_class_csv(result: dict) -> str:
    return render(*per_class_table(result), style="csv")


def save_results(result: dict, out_dir, force: bool = False) -> list[Path]:
    """Write results.json, per_class.csv and (single-label) confusion.png, the confusion summed
    over splits, into `out_dir`. Existing files are replaced only with `force`."""
    out = Path(out_dir)
    claim_folder(
        out,
        {RESULTS: "results", PER_CLASS: "CSV", **({CONFUSION: "PNG"} if result["kind"] == "single" else {})},
        force,
    )
    json.dumps(result, allow_nan=False)  # strict JSON: a NaN here is a bug, not a value to write
    written = [write_json(out / RESULTS, result), write_text(out / PER_CLASS, per_class_csv(result))]
    if result["kind"] == "single":
        total = np.sum([r["confusion"] for r in result["per_split"]], axis=0)
        title = f"{result['dataset']}: {result['setting']} ({len(result['per_split'])} splits summed)"
        written.append(save_confusion_png(total, result["classes"], out / CONFUSION, title))
    return written


def load_results(path) -> dict:
    """A saved results.json (or the folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        raise VGGError(f"no transfer results at {path}")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise VGGError(f"{path}: not a results file ({e})") from None
    if (
        not isinstance(result, dict)
        or result.get("kind") not in ("single", "multi")
        or "summary" not in result
    ):
        raise VGGError(f"{path}: not transfer results (no kind/summary)")
    return result
