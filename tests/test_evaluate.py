import shutil
import subprocess
import sys

import pytest
import torch

from conftest import tiny
from helpers import make_folder, write_image
from vggnet.data.transforms import Normalizer, Scale, default_scales, parse_scales
from vggnet.errors import VGGError
from vggnet.eval import Evaluator, topk_errors
from vggnet.eval.fusion import fuse, load_posteriors
from vggnet.eval.report import collect_rows, markdown
from vggnet.eval.runner import evaluate
from vggnet.models import init_weights, save_weights

PRE = dict(channel_order="RGB", value_range=255.0, mean=[120.0, 115.0, 100.0], std=[1.0, 1.0, 1.0])


def evaluator(name="A", crop=32, classes=3):
    model = init_weights(tiny(name, num_classes=classes, crop_size=crop), "glorot").eval()
    return Evaluator(model, Normalizer(PRE), "cpu")


def test_topk_on_hand_made_posteriors():
    scores = torch.tensor([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = torch.tensor([1, 2, 0, 2])
    e = topk_errors(scores, labels, ks=(1, 2, 5))
    assert e["top1_err"] == 75.0 and e["top2_err"] == 50.0 and e["top5_err"] == 0.0


def test_dense_at_crop_size_equals_center_crop_with_flip():
    ev = evaluator()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    dense = ev.dense(images)
    center = (ev.center(images) + ev.center(images.flip(-1))) / 2
    assert torch.allclose(dense, center, atol=1e-6)
    assert torch.allclose(dense.sum(1), torch.ones(4), atol=1e-5)


def test_flip_averaging_is_symmetric():
    ev = evaluator()
    images = torch.randint(0, 256, (2, 3, 48, 80), dtype=torch.uint8)
    assert torch.allclose(ev.dense(images), ev.dense(images.flip(-1)), atol=1e-6)
    assert torch.allclose(ev.multicrop(images[0]), ev.multicrop(images[0].flip(-1)), atol=1e-6)


def test_dense_averages_scores_before_softmax():
    ev = evaluator()
    image = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    x = ev._input(torch.cat([image, image.flip(-1)]))
    scores = ev.model.dense(x)
    assert scores.shape[-2:] == (2, 3)
    expected = torch.softmax(scores.mean((2, 3)), 1).mean(0)
    assert torch.allclose(ev.dense(image)[0], expected, atol=1e-6)


def test_multicrop_is_the_mean_over_50_grid_crops():
    ev = evaluator()
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    from vggnet.data.transforms import multicrop

    crops = multicrop(image, 32)
    assert crops.shape[0] == 50
    manual = torch.softmax(ev.model(ev._input(crops)), 1).mean(0)
    assert torch.allclose(ev.multicrop(image), manual, atol=1e-6)


def test_default_scales_follow_section_4():
    fixed = Scale(256, 256)
    jitter = Scale(256, 512)
    assert default_scales(fixed, 224, False) == [256]
    assert default_scales(fixed, 224, True) == [224, 256, 288]
    assert default_scales(jitter, 224, False) == [384]
    assert default_scales(jitter, 224, True) == [256, 384, 512]
    assert default_scales(Scale(146, 146), 128, True) == [128, 146, 164]  # 32 * 128/224
    assert default_scales(None, 224, False) == [256]
    with pytest.raises(VGGError, match="comma-separated"):
        parse_scales("256;384")


@pytest.fixture()
def ckpt_and_data(tmp_path):
    data = make_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=3, size=(44, 36), ext=".jpg")
    model = init_weights(tiny("B", num_classes=3, crop_size=32), "glorot")
    meta = dict(classes=["a", "b", "c"], preprocessing=PRE, train=dict(scale=[32, 48], crop=32))
    save_weights(tmp_path / "m.safetensors", model, meta)
    model2 = init_weights(tiny("A", num_classes=3, crop_size=32), "glorot")
    save_weights(tmp_path / "m2.safetensors", model2, meta)
    return tmp_path, data


def test_evaluate_saves_posteriors_and_fusion(ckpt_and_data):
    tmp, data = ckpt_and_data
    protocols = ["center", "dense", "multicrop", "dense+multicrop"]
    r1 = evaluate(tmp / "m.safetensors", data, protocols, scales=[32, 40, 48], out=tmp / "e1", workers=2)
    r2 = evaluate(tmp / "m2.safetensors", data, protocols, multi_scale=True, out=tmp / "e2")
    assert r1["images"] == 9 and r1["scales"] == [32, 40, 48] and r2["scales"] == [32, 40, 48]
    p1, p2 = load_posteriors(tmp / "e1"), load_posteriors(tmp / "e2")
    assert p1["probs"]["dense"].shape == (9, 3)
    # dense+multicrop is the average of the two; multi-scale is the average over Q.
    assert torch.allclose(
        p1["probs"]["dense+multicrop"], (p1["probs"]["dense"] + p1["probs"]["multicrop"]) / 2, atol=1e-6
    )
    per_q = torch.stack([p1["probs"][f"dense@{q}"] for q in (32, 40, 48)]).mean(0)
    assert torch.allclose(p1["probs"]["dense"], per_q, atol=1e-6)
    shutil.copytree(tmp / "e1", tmp / "e1-copy")  # one folder twice is refused: a copy of it is not
    same = fuse([tmp / "e1", tmp / "e1-copy"])
    for p in protocols:
        assert torch.allclose(same["fused"][p], p1["probs"][p], atol=1e-6)
        assert same["protocols"][p]["top1_err"] == pytest.approx(r1["protocols"][p]["top1_err"])
    both = fuse([tmp / "e1", tmp / "e2"], protocol="dense")
    assert torch.allclose(
        both["fused"]["dense"], (p1["probs"]["dense"] + p2["probs"]["dense"]) / 2, atol=1e-6
    )
    rows = collect_rows([tmp / "e1", tmp / "e2"])
    assert len(rows) == 8 and rows[0]["config"] == "B" and rows[0]["train S"] == "[32;48]"
    assert "| B | [32;48] | 32,40,48 | center |" in markdown(rows)


def test_evaluate_refusals(ckpt_and_data):
    tmp, data = ckpt_and_data
    with pytest.raises(VGGError, match="Q=16 is smaller than the crop size 32"):
        evaluate(tmp / "m.safetensors", data, ["dense"], scales=[16, 32])
    with pytest.raises(VGGError, match="valid: center, dense, multicrop, dense\\+multicrop"):
        evaluate(tmp / "m.safetensors", data, ["ten-crop"])
    other = make_folder(tmp / "other", classes=("a", "zebra"), per_class=1, size=(40, 40))
    with pytest.raises(VGGError, match="zebra"):
        evaluate(tmp / "m.safetensors", other, ["center"])
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(VGGError, match="broken.jpg.*--skip-unreadable"):
        evaluate(tmp / "m.safetensors", data, ["center"])
    r = evaluate(tmp / "m.safetensors", data, ["center"], skip_unreadable=True, out=tmp / "e3")
    assert r["images"] == 9 and len(r["unreadable"]) == 1
    with pytest.raises(VGGError, match="refusing to overwrite"):
        evaluate(tmp / "m.safetensors", data, ["center"], skip_unreadable=True, out=tmp / "e3")
    evaluate(
        tmp / "m.safetensors",
        make_folder(tmp / "d2", classes=("a", "b", "c"), per_class=2),
        ["center"],
        out=tmp / "e4",
    )
    with pytest.raises(VGGError, match="different images"):
        fuse([tmp / "e3", tmp / "e4"])


def test_large_odd_images_go_through_every_protocol(tmp_path):
    root = tmp_path / "d"
    write_image(root / "a" / "wide.png", (300, 40))
    write_image(root / "a" / "grey.jpg", (50, 90), mode="L")
    write_image(root / "b" / "tiny.png", (3, 2))
    model = init_weights(tiny("A", num_classes=2, crop_size=32), "glorot")
    save_weights(tmp_path / "m.safetensors", model, dict(classes=["a", "b"], preprocessing=PRE))
    r = evaluate(tmp_path / "m.safetensors", root, ["center", "dense", "multicrop"], scales=[32, 50])
    assert r["images"] == 3


def test_cli_evaluate_fuse_report(ckpt_and_data):
    tmp, data = ckpt_and_data

    def run(*a):
        return subprocess.run([sys.executable, "-m", "vggnet", *a], capture_output=True, text=True)

    out = run(
        "evaluate",
        "--checkpoint",
        str(tmp / "m.safetensors"),
        "--data",
        str(data),
        "--protocol",
        "center",
        "dense",
        "--multi-scale",
        "--out",
        str(tmp / "c1"),
        "--workers",
        "0",
    )
    assert out.returncode == 0, out.stderr
    assert "center" in out.stdout and "top-1 err" in out.stdout
    shutil.copytree(tmp / "c1", tmp / "c1-copy")
    out = run("fuse", str(tmp / "c1"), str(tmp / "c1-copy"))
    assert out.returncode == 0 and "dense" in out.stdout
    out = run("fuse", str(tmp / "c1"), str(tmp / "c1"))
    assert out.returncode == 2 and "same folder" in out.stderr and len(out.stderr.splitlines()) == 1
    out = run("report", str(tmp / "c1"), "--out", str(tmp / "t.md"))
    assert out.returncode == 0 and (tmp / "t.csv").read_text().startswith("run,config,train S")
    out = run("evaluate", "--checkpoint", str(tmp / "m.safetensors"), "--data", str(data), "--scales", "8")
    assert out.returncode == 2 and "smaller than the crop" in out.stderr and "Traceback" not in out.stderr
