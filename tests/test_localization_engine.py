"""Appendix A through the training engine and the test protocols: tiny nets, synthetic boxes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny
from helpers import boxed_world, kill_mid_epoch
from vggnet.cli import main
from vggnet.data.loaders import scaled_loader
from vggnet.data.transforms import Normalizer
from vggnet.engine import load_config, train
from vggnet.engine.schedule import PlateauSchedule
from vggnet.errors import VGGError
from vggnet.eval.protocols import Evaluator
from vggnet.localization.evaluate import evaluate_loc, load_predictions, merge_runs
from vggnet.localization.metrics import gt_class_box_error
from vggnet.localization.objective import BoxRegression, open_boxes, params_to_boxes
from vggnet.models import load_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return boxed_world(tmp_path_factory.mktemp("loc"), seed=2)


def loc_cfg(data, out, **kw):
    base = dict(
        objective="boxes",
        head="pcr",
        arch="A",
        width=1 / 16,
        fc_dim=32,
        crop=32,
        scale="40",
        data=str(data / "d/boxes-train.csv"),
        val_data=str(data / "d/boxes-val.csv"),
        batch_size=8,
        epochs=2,
        workers=0,
        out=str(out),
        progress=False,
        dropout=0.0,
        lr=0.01,
        init_from=str(data / "cls/best.safetensors"),
    )
    base.update(kw)
    return load_config(None, base)


def test_pcr_loss_has_no_gradient_on_other_classes_outputs():
    objective = BoxRegression(per_class=True).bind(32)
    outputs = torch.randn(4, 3 * 4, requires_grad=True)
    batch = dict(
        box_class=torch.tensor([0, 2, 1, 2]), box=torch.rand(4, 4), has_box=torch.tensor([1, 1, 1, 0])
    )
    objective.loss(outputs, batch).backward()
    grad = outputs.grad.view(4, 3, 4)
    for i, c in enumerate([0, 2, 1, 2]):
        others = [k for k in range(3) if k != c]
        assert grad[i, others].abs().max() == 0
    assert (
        grad[0, 0].abs().max() > 0 and grad[3].abs().max() == 0
    )  # a crop without a visible box: no gradient
    # Euclidean loss, 1/2 ||p - t||^2 per crop, summed
    p = outputs.detach().view(4, 3, 4)[torch.arange(4), batch["box_class"]]
    expected = 0.5 * ((p - batch["box"]) ** 2).sum(1)[:3].sum()
    assert torch.allclose(objective.loss(outputs.detach(), batch), expected)


def test_scr_shares_one_box_and_params_to_boxes_by_hand():
    objective = BoxRegression(per_class=False).bind(32)
    outputs = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert torch.equal(objective.predicted(outputs, torch.tensor([7])), outputs)
    boxes = params_to_boxes(outputs, 32)
    assert torch.allclose(boxes, torch.tensor([[8.0, 8.0, 24.0, 24.0]]))


def test_the_plateau_rule_follows_the_mean_iou_while_the_error_is_stuck():
    objective = BoxRegression()
    v = objective.summary(dict(wrong=4, sq_err=2.0, iou=1.0), 4, "val")
    assert (v["val_loc_err"], v["val_mean_iou"], v[objective.monitor]) == (100, 0.25, 0.75)
    schedule = PlateauSchedule(lr=0.03, patience=0)
    for iou in (0.5, 1.0, 1.5):  # every box still misses, but they grow towards the objects
        figures = objective.summary(dict(wrong=4, sq_err=2.0, iou=iou), 4, "val")
        assert figures["val_loc_err"] == 100 and schedule.step(figures[objective.monitor])["improved"]
    assert schedule.lr == 0.03 and schedule.drops == 0


def test_validation_during_training_is_loc_evaluates_protocol_1_check():
    """The per-epoch check is `loc evaluate`'s: the box clipped to the image, IoU 0.5 by hand a hit."""
    objective = BoxRegression(per_class=False).bind(32)
    outputs = torch.tensor(
        [
            [0.2, 0.2, 0.9, 0.9],  # IoU 1/2 by hand with its GT below, computed 0.4999...
            [-0.375, 0.25, 1.75, 0.5],  # [-40, 0, 16, 16]: beyond the image's left edge at -8
            [0.5, 0.5, 0.25, 0.25],
        ]
    )  # [12, 12, 20, 20]: misses
    first = params_to_boxes(outputs[:1], 32).double()[0]
    nan = [float("nan")] * 4
    gt = torch.tensor(
        [
            [[first[0], first[1], first[0] + 2 * (first[2] - first[0]), first[3]], nan],
            [[-8.0, 0.0, 16.0, 16.0], nan],
            [[0.0, 0.0, 8.0, 8.0], [24.0, 24.0, 32.0, 32.0]],
        ],
        dtype=torch.float64,
    )
    extent = torch.tensor([[-8.0, -8.0, 40.0, 40.0]] * 3, dtype=torch.float64)  # 48 x 48, crop at (8, 8)
    batch = dict(
        labels=torch.zeros(3, dtype=torch.int64),
        gt_boxes=gt,
        extent=extent,
        box=torch.zeros(3, 4),
        has_box=torch.zeros(3),
    )
    wrong, _, iou_sum = objective.val_counts(outputs, batch).tolist()
    assert wrong == 1  # only the third; unclipped, the second would miss too (IoU 24 / 56)
    assert iou_sum == pytest.approx(0.5 + 1.0 + 0.0)
    # the same boxes in image pixels (a 96 x 96 image: crop frame + 8, times 2), as loc evaluate scores them

    def to_image(b):
        return (np.asarray(b, dtype=np.float64) + 8) * 2

    preds = to_image(params_to_boxes(outputs, 32).numpy())
    gts = [to_image(g[~np.isnan(g).any(1)]) for g in gt.numpy()]
    assert gt_class_box_error(preds, gts, [[0, 0, 96, 96]] * 3) == pytest.approx(100 / 3)


def test_dense_box_map_at_crop_size_equals_the_crop_prediction():
    model = tiny("B", num_classes=3, head="pcr").eval()
    x = torch.randn(2, 3, 32, 32)
    assert model.dense(x).shape == (2, 12, 1, 1)
    assert torch.allclose(model.dense(x)[..., 0, 0], model(x), atol=1e-5)
    big = model.dense(torch.randn(1, 3, 96, 64))
    assert big.shape == (1, 12, 3, 2)  # floor(96/32) - 32/32 + 1, floor(64/32) - 1 + 1


def test_a_few_steps_of_box_training_lower_the_loss(data, tmp_path):
    result = train(loc_cfg(data, tmp_path / "run", epochs=4, lr=0.02))
    log = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert result["status"] == "done" and log[-1]["train_loss"] < log[0]["train_loss"]
    model, meta = load_model(tmp_path / "run/final.safetensors")
    assert meta.model.head == "pcr" and model.classifier[6].out_features == 3 * 4
    assert meta.train.warm_start["layers"][-1] == "fc7"  # all but the (random) box layer
    assert {"train_loc_err", "val_loc_err", "val_loss", "val_mean_iou"} <= set(log[0])


def test_fc_only_fine_tuning_keeps_the_conv_layers(data, tmp_path):
    train(loc_cfg(data, tmp_path / "fc", head="scr", finetune="fc", epochs=1, lr=0.05))
    cls, _ = load_model(data / "cls/best.safetensors")
    loc, meta = load_model(tmp_path / "fc/final.safetensors")
    assert meta.model.head == "scr" and loc.classifier[6].out_features == 4
    for k, v in cls.state_dict().items():
        if k.startswith("features."):
            assert torch.equal(v, loc.state_dict()[k]), k  # weights and BN statistics unchanged
    assert not torch.equal(cls.classifier[0].weight, loc.classifier[0].weight)


def test_protocols_saved_boxes_merge_and_fusion(data, tmp_path):
    train(loc_cfg(data, tmp_path / "run", epochs=1))
    ckpt, boxes = tmp_path / "run/best.safetensors", data / "d/boxes-val.csv"
    r = evaluate_loc(
        ckpt,
        boxes,
        out=tmp_path / "ev",
        classifier=str(data / "cls/best.safetensors"),
        multi_scale=True,
        gallery=4,
    )
    assert r["images"] == 12 and r["scales"] == [35, 40, 45] and 0 <= r["center"]["gt_class_err"] <= 100
    assert set(r["dense"]) >= {"top1_loc_err", "top5_loc_err"} and "whole image" in r["baselines"]
    assert (tmp_path / "ev/gallery.png").read_bytes()[:4] == b"\x89PNG"
    pred = load_predictions(tmp_path / "ev")
    # every location of every scale gives one box per guessed class (3 classes < top-5)
    locations = sum((q // 32 - 1 + 1) * (q // 32 - 1 + 1) for q in (35, 40, 45))
    assert len(pred["boxes"]) == 12 * 3 * locations
    # merging from the saved boxes gives the evaluation's own figures; a fusion of a net with
    # itself doubles every box and, with the scores summed, keeps the guesses
    again = merge_runs([tmp_path / "ev"], boxes, threshold=0.0)
    assert again["dense"] == r["dense"]
    twice = merge_runs([tmp_path / "ev", tmp_path / "ev"], boxes, threshold=0.0)
    assert twice["dense"]["top5_loc_err"] == r["dense"]["top5_loc_err"]
    tuned = merge_runs([tmp_path / "ev"], boxes, tune=True, out=tmp_path / "m")
    assert len(tuned["tuned"]) > 3 and tuned["dense"]["threshold"] in [t["threshold"] for t in tuned["tuned"]]
    assert min(t["top5_loc_err"] for t in tuned["tuned"]) == tuned["dense"]["top5_loc_err"]


def test_loc_evaluate_ranks_classes_by_the_dense_protocol_with_the_flip(data, tmp_path):
    """§3.2: the classifier's posteriors that rank protocol 2's classes are `vggnet evaluate`'s dense
    ones, the flipped image averaged in, even when the flip's boxes are not asked for."""
    train(loc_cfg(data, tmp_path / "run", epochs=1))
    boxes, qs = data / "d/boxes-val.csv", [40, 72]
    r = evaluate_loc(
        tmp_path / "run/best.safetensors",
        boxes,
        out=tmp_path / "ev",
        protocols=("dense",),
        classifier=str(data / "cls/best.safetensors"),
        scales=qs,
        flip=False,
        amp="off",
    )
    got = load_predictions(tmp_path / "ev")["class_scores"]
    cls, meta = load_model(data / "cls/best.safetensors")
    ev, source = (
        Evaluator(cls.eval(), Normalizer(meta.preprocessing), "cpu"),
        open_boxes(boxes, None, meta.classes),
    )
    expected = [
        torch.stack([ev.dense(item["images"][q][None])[0] for q in qs]).mean(0).numpy()
        for item in scaled_loader(source.as_source(), qs)
    ]
    assert r["images"] == len(expected) == len(got)
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        no_flip = [
            torch.stack(
                [F.softmax(cls.dense(ev.norm(item["images"][q][None])).mean((2, 3)), 1)[0] for q in qs]
            )
            .mean(0)
            .numpy()
            for item in scaled_loader(source.as_source(), qs)
        ]
    assert np.abs(np.array(no_flip) - got).max() > 1e-4  # the flip changes the figures: the test can fail


def test_bad_box_files_are_refused_before_any_work(data, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    lines = (data / "d/boxes-train.csv").read_text().splitlines()
    row = lines[3].split(",")
    row[4] = str(float(row[2]) - 1)  # xmax <= xmin
    bad.write_text("\n".join(lines[:3] + [",".join(row)] + lines[4:]) + "\n")
    (tmp_path / "d").symlink_to(data / "d")
    code = main(
        [
            "loc",
            "train",
            "--arch",
            "A",
            "--width",
            "0.0625",
            "--fc-dim",
            "32",
            "--crop",
            "32",
            "--scale",
            "40",
            "--data",
            str(bad),
            "--data-root",
            str(data / "d"),
            "--out",
            str(tmp_path / "run"),
            "--workers",
            "0",
            "--init-from",
            str(data / "cls/best.safetensors"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:4" in err and "xmax" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    with pytest.raises(VGGError, match="takes a box regressor"):
        evaluate_loc(data / "cls/best.safetensors", data / "d/boxes-val.csv")
    train(loc_cfg(data, tmp_path / "loc", epochs=1))
    with pytest.raises(VGGError, match="needs the classes of a classification system"):
        evaluate_loc(tmp_path / "loc/best.safetensors", data / "d/boxes-val.csv")


@pytest.mark.slow
def test_a_killed_loc_run_resumes_exactly(data, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    args = [
        "loc",
        "train",
        "--arch",
        "A",
        "--width",
        "0.0625",
        "--fc-dim",
        "32",
        "--crop",
        "32",
        "--scale",
        "40",
        "--data",
        str(data / "d/boxes-train.csv"),
        "--val-data",
        str(data / "d/boxes-val.csv"),
        "--batch-size",
        "4",
        "--epochs",
        "2",
        "--workers",
        "0",
        "--no-progress",
        "--dropout",
        "0.3",
        "--checkpoint-steps",
        "1",
        "--init-from",
        str(data / "cls/best.safetensors"),
        "--deterministic",
    ]

    def run(out, *extra):
        return subprocess.Popen(
            [sys.executable, "-m", "vggnet", *args, "--out", str(out), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    ref = run(tmp_path / "ref")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    p = run(tmp_path / "run")
    kill_mid_epoch(p, tmp_path / "run")
    r = run(tmp_path / "run", "--resume")
    assert r.wait(timeout=300) == 0, r.stderr.read()
    a, _ = load_model(tmp_path / "ref/final.safetensors")
    b, _ = load_model(tmp_path / "run/final.safetensors")
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert np.allclose(
        [json.loads(x)["val_loc_err"] for x in (tmp_path / "ref/log.jsonl").read_text().splitlines()],
        [json.loads(x)["val_loc_err"] for x in (tmp_path / "run/log.jsonl").read_text().splitlines()],
    )
