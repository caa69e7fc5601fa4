"""``vggnet features`` and ``vggnet transfer``: Appendix B from the command line.

``features``: one checkpoint over one data set -> a features file (per-scale descriptors, written
once; every SVM experiment reads it). ``transfer``: one or several features files (several:
late fusion, their descriptors stacked in the order given) -> linear SVMs under one of the two
protocols, results saved with their splits so that a run can be repeated exactly:

- ``splits`` (Caltech-101/256 style): N random splits of a fixed number of training images per
  class and up to M test images per class, mean class recall, mean ± std over the splits;
- ``multilabel`` (PASCAL VOC style): a fixed train/test division (a second features file, or a
  seeded random hold-out of a fraction of the images), mean AP by the VOC-2007 11-point rule and
  by the area under the curve.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VGGError
from ..fileio import claim_folder, claim_output
from .descriptors import features_from_checkpoint
from .features_file import load_features, save_features, stack_nets, subset_features
from .protocols import run_multilabel, run_splits, save_results
from .splits import load_splits, random_holdout, random_splits, save_splits
from .svm import DEFAULT_CS, SVMChoice

# Appendix B: Caltech stacks the scales (objects fill the image, scales carry different semantics);
# VOC averages them (objects appear at all scales, averaging performed like stacking).
DEFAULT_COMBINE = {"splits": "stack", "multilabel": "average"}


def features_command(
    checkpoint, data, out, scales=None, layer: str = "fc7", force: bool = False, **options
) -> dict:
    """Compute and save the descriptors of `data` (see :func:`descriptors.features_from_checkpoint`)."""

    out = claim_output(out, "features", force)
    features = features_from_checkpoint(checkpoint, data, scales, layer, **options)
    save_features(out, features, force=True)  # claimed above
    return dict(
        out=str(out),
        images=len(features["ids"]),
        scales=features["scales"],
        layer=layer,
        dim=features["nets"][0]["dim"],
        classes=len(features["classes"]),
        label_kind=features["label_kind"],
        images_per_s=features.get("images_per_s"),
        unreadable=features["unreadable"],
    )


def dataset_name(data) -> str | None:
    """A name for the tables: the data folder's (its parent's for train/val/images folders and for
    label files)."""
    if not data:
        return None
    p = Path(str(data))
    if p.suffix.lower() in (".csv", ".tsv", ".txt") or p.name.lower() in ("train", "val", "test", "images"):
        p = p.parent
    return p.name or None


def _open(paths) -> dict:
    feats = [load_features(p) for p in paths]
    return feats[0] if len(feats) == 1 else stack_nets(feats)


def transfer_command(
    features,
    out=None,
    *,
    protocol: str = "auto",
    combine: str = "auto",
    scales=None,
    splits: int = 3,
    train_per_class: int = 30,
    test_per_class: int | None = 50,
    splits_file=None,
    test_features=None,
    test_fraction: float = 0.5,
    seed: int = 0,
    Cs=DEFAULT_CS,
    dataset: str | None = None,
    force: bool = False,
) -> dict:
    train = _open(features)
    kind = train["label_kind"]
    if protocol == "auto":
        protocol = "multilabel" if kind == "multi" else "splits"
    if (protocol == "multilabel") != (kind == "multi"):
        raise VGGError(
            f"--protocol {protocol} does not fit {'multi' if kind == 'multi' else 'single'}-label features; "
            f"use {'multilabel' if kind == 'multi' else 'splits'}"
        )
    if protocol == "splits" and test_features:
        raise VGGError(
            "--test-features goes with the multilabel protocol; the splits protocol draws its test images"
        )
    if combine == "auto":
        combine = DEFAULT_COMBINE[protocol]
    if out is not None:  # every output claimed before any work
        outputs = {"results.json": "results", "per_class.csv": "CSV"}
        outputs.update({"splits.json": "splits", "confusion.png": "PNG"} if protocol == "splits" else {})
        claim_folder(out, outputs, force)
    dataset = dataset or dataset_name(train.get("data"))
    if protocol == "splits":
        if splits_file:
            drawn = load_splits(splits_file, train["ids"])
        else:
            drawn = random_splits(
                train["labels"], splits, train_per_class, test_per_class, seed, train["classes"]
            )
        result = run_splits(train, drawn, combine, scales, SVMChoice(tuple(Cs), seed=seed), dataset)
        result["splits_settings"] = dict(
            splits=len(drawn),
            train_per_class=train_per_class,
            test_per_class=test_per_class,
            seed=seed,
            file=splits_file,
        )
        if out is not None:
            save_splits(Path(out) / "splits.json", drawn, train["ids"], result["splits_settings"], force=True)
    else:
        if test_features:
            test = _open(test_features)
        else:  # a fixed, seeded division of one labelled set into train and test images
            part = random_holdout(len(train["ids"]), test_fraction, seed)
            train, test = subset_features(train, part["fit"]), subset_features(train, part["val"])
        result = run_multilabel(train, test, combine, scales, SVMChoice(tuple(Cs), seed=seed), dataset)
        result["division"] = dict(
            test_features=test_features, test_fraction=None if test_features else test_fraction, seed=seed
        )
    if out is not None:
        save_results(result, out, force)
    return result
