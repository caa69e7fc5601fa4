import csv
import json

import numpy as np
import pytest

import vggnet.transfer.svm as svm_module
from vggnet.errors import VGGError
from vggnet.transfer.features_file import subset_features
from vggnet.transfer.protocols import load_results, run_multilabel, run_splits, save_results
from vggnet.transfer.report import table11
from vggnet.transfer.splits import load_splits, random_splits, save_splits, stratified_holdout
from vggnet.transfer.svm import SVMChoice, fit_svm, select_C


def clustered(per_class=(20, 14, 12), dim=8, noise=0.3, seed=0):
    """Single-label features: class c is a cloud around 3 * e_c (plus noise)."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    x = rng.normal(0, noise, (len(labels), dim)).astype(np.float32)
    x[np.arange(len(labels)), labels] += 3.0
    return x, labels


def as_features(x, labels, kind="single", classes=None, ids=None):
    n_classes = labels.shape[1] if kind == "multi" else int(labels.max()) + 1
    return dict(
        per_scale={32: x.astype(np.float32)},
        scales=[32],
        ids=ids or [f"im{i}" for i in range(len(x))],
        classes=classes or [f"c{c}" for c in range(n_classes)],
        labels=labels,
        label_kind=kind,
        layer="fc7",
        data="/data/toy",
        nets=[dict(arch="D", checkpoint="d.safetensors", layer="fc7", dim=x.shape[1])],
        unreadable=[],
    )


# -- splits ---------------------------------------------------------------------------------------
def test_random_splits_counts_disjoint_reproducible():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 12)
    splits = random_splits(labels, 3, train_per_class=4, test_per_class=5, seed=7)
    assert len(splits) == 3
    for s in splits:
        train, test = np.array(s["train"]), np.array(s["test"])
        assert not set(s["train"]) & set(s["test"])
        assert np.bincount(labels[train]).tolist() == [4, 4, 4]
        assert np.bincount(labels[test]).tolist() == [5, 3, 5]  # class 1 has only 3 left
    assert splits[0] != splits[1]
    assert random_splits(labels, 3, 4, 5, seed=7) == splits
    assert random_splits(labels, 3, 4, 5, seed=8) != splits
    everything = random_splits(labels, 1, 4, None, seed=7)[0]
    assert sorted(everything["train"] + everything["test"]) == list(range(len(labels)))


def test_random_splits_refuse_a_small_class():
    labels = np.array([0] * 10 + [1] * 4)
    with pytest.raises(VGGError, match=r"class 'rare' has 4 images.*need >= 5"):
        random_splits(labels, 1, train_per_class=4, classes=["common", "rare"])


def test_splits_file_round_trip_and_refuses_other_images(tmp_path):
    labels = np.array([0] * 6 + [1] * 6)
    ids = [f"im{i}" for i in range(12)]
    splits = random_splits(labels, 2, 3, seed=1)
    path = save_splits(tmp_path / "splits.json", splits, ids, dict(seed=1, train_per_class=3))
    assert load_splits(path, ids) == splits
    with pytest.raises(VGGError, match="other images"):
        load_splits(path, ids[::-1])
    with pytest.raises(VGGError, match="already exists"):
        save_splits(path, splits, ids)


def test_stratified_holdout_takes_20_percent_per_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1)
    part = stratified_holdout(labels, 0.2, seed=0)
    assert np.bincount(labels[part["val"]], minlength=3).tolist() == [2, 1, 0]
    assert sorted(part["fit"] + part["val"]) == list(range(16))


# -- SVM and the choice of C ----------------------------------------------------------------------
def test_C_is_chosen_on_training_data_only(monkeypatch):
    x, y = clustered()
    features = as_features(x, y)
    splits = random_splits(y, 2, train_per_class=8, seed=0)
    seen = []
    real_fit = svm_module.fit_linear_svm

    def spy(x_fit, y_fit, *args, **kw):
        seen.append(np.asarray(x_fit).copy())
        return real_fit(x_fit, y_fit, *args, **kw)

    monkeypatch.setattr(svm_module, "fit_linear_svm", spy)
    result = run_splits(features, splits, choice=SVMChoice(Cs=(0.01, 1.0, 100.0)))
    # Every row any SVM was fitted on belongs to that split's training images.
    from vggnet.transfer.descriptors import descriptor_matrix

    xd = descriptor_matrix(features)
    per_split = len(seen) // len(splits)
    for i, s in enumerate(splits):
        train_rows = {r.tobytes() for r in xd[s["train"]]}
        for fitted in seen[i * per_split : (i + 1) * per_split]:
            assert all(r.tobytes() in train_rows for r in fitted)
    monkeypatch.undo()
    # Test images replaced by noise and given scrambled labels change nothing in the selection,
    # only the test score. (Split i's test images are training images of other splits, so each
    # split is rerun on its own, with the seed run_splits gave it.)
    rng = np.random.default_rng(1)
    for i, s in enumerate(splits):
        x2, y2 = x.copy(), y.copy()
        x2[s["test"]] = rng.normal(0, 1, (len(s["test"]), x.shape[1]))
        y2[s["test"]] = rng.permutation(y2[s["test"]])
        other = run_splits(as_features(x2, y2), [s], choice=SVMChoice(Cs=(0.01, 1.0, 100.0), seed=i))[
            "per_split"
        ][0]
        assert other["C"] == result["per_split"][i]["C"]
        assert other["val_scores"] == result["per_split"][i]["val_scores"]
        assert other["mean_class_recall"] < result["per_split"][i]["mean_class_recall"]


def test_select_C_prefers_the_smallest_of_equal_scores_and_refits_on_all():
    x, y = clustered(per_class=(10, 10, 10))
    chosen = fit_svm(x, y, "single", SVMChoice(Cs=(100.0, 1.0, 10.0)))
    assert chosen["val_images"] == 6 and chosen["fit_images"] == 24  # 20% per class
    assert set(chosen["val_scores"]) == {1.0, 10.0, 100.0}
    assert all(s == 1.0 for s in chosen["val_scores"].values())  # separable: every C is perfect
    assert chosen["C"] == 1.0
    assert chosen["model"].predict(x).tolist() == y.tolist()  # refitted on all 30 images


def test_select_C_picks_the_validation_best():
    # Unbalanced classes (24 vs 6) away from the origin: a heavily regularised SVM (tiny C, the
    # bias regularised too) predicts the large class for everything, recall (1 + 0) / 2.
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], [24, 6])
    x = np.stack([np.full(30, 5.0), y + rng.normal(0, 0.1, 30)], axis=1).astype(np.float32)
    chosen = select_C(x, y, "single", SVMChoice(Cs=(1e-4, 1.0, 100.0)))
    assert chosen["val_scores"][1e-4] == pytest.approx(0.5) and chosen["val_scores"][1.0] == pytest.approx(
        1.0
    )
    assert chosen["C"] == 1.0  # 1 and 100 tie: the smaller wins


def test_multilabel_svm_ignores_difficult_images(monkeypatch):
    sizes = []
    real = svm_module._linear_svc

    class Recording:
        def __init__(self, *a):
            self.inner = real(*a)

        def fit(self, x, y):
            sizes.append(len(x))
            self.inner.fit(x, y)
            return self

        def decision_function(self, x):
            return self.inner.decision_function(x)

    monkeypatch.setattr(svm_module, "_linear_svc", Recording)
    x, _ = clustered(per_class=(6, 6), dim=4)
    y = np.where(np.arange(12)[:, None] < 6, [[1, -1]], [[-1, 1]])
    y[0, 0] = y[1, 0] = 0
    fit_svm(x, y, "multi", SVMChoice(Cs=(1.0,)))
    assert sizes == [10, 12]


def test_multilabel_class_without_positive_training_image_is_refused():
    x, _ = clustered(per_class=(4, 4), dim=4)
    y = np.array([[1, -1]] * 4 + [[-1, 0]] * 4)
    with pytest.raises(VGGError, match="class 'dog' has no positive training image"):
        fit_svm(x, y, "multi", SVMChoice(Cs=(1.0,)), classes=["cat", "dog"])


# -- protocols, files, table ----------------------------------------------------------------------
def test_run_splits_reports_recall_per_split(tmp_path):
    x, y = clustered()
    result = run_splits(
        as_features(x, y), random_splits(y, 3, 8, seed=0), choice=SVMChoice(Cs=(0.1, 1.0)), dataset="toy"
    )
    assert result["summary"]["splits"] == 3 and result["summary"]["mean"] == pytest.approx(100.0)
    assert result["setting"] == "D fc7 Q=32" and result["dataset"] == "toy"
    row = result["per_split"][0]
    assert row["test_counts"] == [12, 6, 4] and np.trace(np.array(row["confusion"])) == 22
    written = save_results(result, tmp_path / "out")
    assert [p.name for p in written] == ["results.json", "per_class.csv", "confusion.png"]
    assert (tmp_path / "out" / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.reader(open(tmp_path / "out" / "per_class.csv")))
    assert rows[0][0] == "class" and [r[0] for r in rows[1:]] == ["c0", "c1", "c2"]
    assert load_results(tmp_path / "out")["summary"] == json.loads(json.dumps(result["summary"]))
    with pytest.raises(VGGError, match="refusing to overwrite"):
        save_results(result, tmp_path / "out")
    save_results(result, tmp_path / "out", force=True)


def multilabel_toy(n=40, seed=0):
    """Class c is present when feature c is high; feature 2 is noise."""
    rng = np.random.default_rng(seed)
    present = rng.random((n, 2)) < 0.4
    present[:2] = [[True, False], [False, True]]  # each class has positives
    present[2:4] = [[True, False], [False, True]]
    x = rng.normal(0, 0.05, (n, 3)).astype(np.float32) + 0.5
    x[:, :2] += 2.0 * present
    y = np.where(present, 1, -1).astype(np.int8)
    return x, y


def test_run_multilabel_reports_both_ap_definitions(tmp_path):
    x, y = multilabel_toy()
    y[5, 0] = 0  # a difficult image
    f = as_features(x, y, "multi", classes=["cat", "dog"])
    train, test = subset_features(f, range(0, 40, 2)), subset_features(f, range(1, 40, 2))
    result = run_multilabel(train, test, choice=SVMChoice(Cs=(0.1, 1.0)), dataset="voc-toy")
    assert set(result["metrics"]) == {"VOC07 11-point", "area under curve"}
    for m in result["metrics"].values():
        assert m["mean"] == pytest.approx(100.0) and len(m["per_class"]) == 2
    assert result["test_ignored"] == [1, 0]
    save_results(result, tmp_path / "voc")
    rows = list(csv.reader(open(tmp_path / "voc" / "per_class.csv")))
    assert rows[0][-2:] == ["AP VOC07 11-point", "AP area under curve"] and rows[1][0] == "cat"
    with pytest.raises(VGGError, match="share 20 images"):
        run_multilabel(train, train)


def test_table11_layout():
    x, y = clustered()
    caltech = run_splits(
        as_features(x, y), random_splits(y, 2, 8, seed=0), choice=SVMChoice(Cs=(1.0,)), dataset="caltech-toy"
    )
    xm, ym = multilabel_toy()
    fm = as_features(xm, ym, "multi")
    voc = run_multilabel(
        subset_features(fm, range(20)),
        subset_features(fm, range(20, 40)),
        choice=SVMChoice(Cs=(1.0,)),
        dataset="voc-toy",
    )
    fused = dict(
        caltech, setting="D&E fc7 stack Q=256,384,512", summary=dict(caltech["summary"], mean=92.7, std=0.5)
    )
    text = table11([voc, caltech, fused])
    lines = text.strip().splitlines()
    assert lines[0] == (
        "| net / descriptor | voc-toy (mAP, VOC07 11-point) | caltech-toy (mean class recall, 2 splits) |"
    )
    assert lines[2].startswith("| D fc7 Q=32 | 100.0 | 100.0 ± 0.0 |")
    assert lines[3] == "| D&E fc7 stack Q=256,384,512 | - | 92.7 ± 0.5 |"
