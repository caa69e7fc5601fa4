"""Appendix B from the command line: features once, SVM protocols on saved features, tables."""

import json

import numpy as np
import pytest

from conftest import tiny
from helpers import make_folder, write_image
from vggnet.cli import main
from vggnet.models import init_weights, save_weights
from vggnet.transfer.features_file import load_features

PRE = dict(channel_order="RGB", value_range=255.0, mean=[120.0, 115.0, 100.0], std=[1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tr")
    model = init_weights(tiny("A", num_classes=3, crop_size=32), "glorot")
    save_weights(
        root / "w.safetensors",
        model,
        dict(classes=["a", "b", "c"], preprocessing=PRE, train=dict(scale=[32, 32], crop=32)),
    )
    make_folder(root / "imgs", classes=("p", "q", "r"), per_class=6, size=(44, 36))
    lines = ["path,cat,dog"]
    for i in range(30):
        write_image(root / "ml" / f"{i}.png", (40, 40), seed=i)
        lines.append(f"{i}.png,{[1, -1, 0][i % 3]},{[-1, 1][i % 2]}")
    (root / "ml" / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def run(*argv):
    return main([str(a) for a in argv])


def test_features_splits_fusion_and_report(setup, tmp_path, capsys):
    w, f = setup / "w.safetensors", tmp_path / "f.safetensors"
    assert (
        run(
            "features",
            "--checkpoint",
            w,
            "--data",
            setup / "imgs",
            "--out",
            f,
            "--scales",
            "32,48",
            "--workers",
            "0",
        )
        == 0
    )
    feats = load_features(f)
    assert feats["scales"] == [32, 48] and len(feats["ids"]) == 18 and feats["layer"] == "fc7"
    before = f.read_bytes()
    assert run("features", "--checkpoint", w, "--data", setup / "imgs", "--out", f, "--workers", "0") == 2
    assert "refusing to overwrite" in capsys.readouterr().err and f.read_bytes() == before
    assert (
        run(
            "transfer",
            f,
            "--train-per-class",
            "3",
            "--test-per-class",
            "2",
            "--splits",
            "2",
            "--out",
            tmp_path / "t1",
        )
        == 0
    )
    r = json.loads((tmp_path / "t1/results.json").read_text())
    assert r["summary"]["splits"] == 2 and all(s["test_images"] == 6 for s in r["per_split"])
    assert r["combine"] == "stack"  # Appendix B: Caltech-style splits stack the scales by default
    assert (tmp_path / "t1/confusion.png").read_bytes()[:4] == b"\x89PNG"
    # the saved splits replay exactly
    assert run("transfer", f, "--splits-file", tmp_path / "t1/splits.json", "--out", tmp_path / "t2") == 0
    r2 = json.loads((tmp_path / "t2/results.json").read_text())
    assert [s["mean_class_recall"] for s in r2["per_split"]] == [
        s["mean_class_recall"] for s in r["per_split"]
    ]
    # late fusion of two nets = their descriptors stacked; a different image set is refused
    assert run("transfer", f, f, "--train-per-class", "3", "--splits", "1", "--out", tmp_path / "t3") == 0
    assert json.loads((tmp_path / "t3/results.json").read_text())["setting"].startswith("A&A")
    capsys.readouterr()
    assert run("transfer", f, "--train-per-class", "6") == 2
    assert "need >= 7" in capsys.readouterr().err
    assert run("report", tmp_path / "t1", tmp_path / "t3") == 0
    assert "Table 11" in capsys.readouterr().out


def test_multilabel_voc_protocol(setup, tmp_path, capsys):
    f = tmp_path / "ml.safetensors"
    assert (
        run(
            "features",
            "--checkpoint",
            setup / "w.safetensors",
            "--data",
            setup / "ml/labels.csv",
            "--out",
            f,
            "--scales",
            "32,48",
            "--workers",
            "0",
        )
        == 0
    )
    assert load_features(f)["label_kind"] == "multi"
    assert run("transfer", f, "--test-fraction", "0.5", "--out", tmp_path / "m") == 0
    r = json.loads((tmp_path / "m/results.json").read_text())
    assert r["combine"] == "average"  # Appendix B: VOC averages over the scales unless told otherwise
    assert r["kind"] == "multi" and set(r["metrics"]) == {"VOC07 11-point", "area under curve"}
    assert r["train_images"] == r["test_images"] == 15
    assert np.isfinite(r["summary"]["mean"])
    assert run("transfer", f, "--protocol", "splits") == 2
    assert "multilabel" in capsys.readouterr().err
