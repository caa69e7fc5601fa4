"""Released weights in, deployable models out: names users know, ImageNet classes, convert ->
evaluate end to end, predict, fine-tuning to a new class count, ONNX export, tracing."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import tiny
from helpers import write_image
from vggnet.cli import main
from vggnet.data.imagenet import imagenet_classes
from vggnet.data.synth import make_synthetic
from vggnet.engine import load_config, train
from vggnet.engine.config import check_settings
from vggnet.errors import VGGError
from vggnet.models import (
    complexity,
    create_model,
    export_torchvision,
    init_weights,
    list_models,
    load_model,
    save_weights,
)
from vggnet.predict import predict

PRE = dict(channel_order="RGB", value_range=255.0, mean=[120.0, 115.0, 100.0], std=[1.0, 1.0, 1.0])


def test_torchvision_names_wherever_a_letter_is():
    assert {"vgg11", "vgg16", "vgg19_bn"} <= set(list_models(aliases=True)) and "vgg16" not in list_models()
    with torch.device("meta"):
        assert sum(p.numel() for p in create_model("vgg16").parameters()) == complexity("D")["params"]
    bn = tiny("vgg13_bn")
    assert bn.arch == "B" and bn.spec.batch_norm
    cfg = load_config(None, dict(arch="vgg19", data="x", out="y"))
    check_settings(cfg)
    assert cfg.arch == "E" and not cfg.batch_norm
    with pytest.raises(VGGError, match="vgg11, vgg13"):
        create_model("vgg17")


def test_create_model_with_weights(tmp_path):
    source = tiny("B", num_classes=4)
    export_torchvision(source, tmp_path / "tv.pth")
    model = create_model("vgg13", weights=tmp_path / "tv.pth")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in source.state_dict().items())
    with pytest.raises(VGGError, match="holds config B, not vgg16"):
        create_model("vgg16", weights=tmp_path / "tv.pth")


def test_convert_a_1000_class_torchvision_file_then_evaluate_a_wnid_folder(tmp_path, capsys):
    """The README's released-weights path, end to end, on a tiny fake 1000-class file."""
    export_torchvision(tiny("B", num_classes=1000), tmp_path / "vgg13.pth")
    assert main(["convert", str(tmp_path / "vgg13.pth"), str(tmp_path / "vgg13.safetensors")]) == 0
    model, meta = load_model(tmp_path / "vgg13.safetensors")
    assert meta.classes == imagenet_classes() and meta.classes[0] == "n01440764"
    assert meta.preprocessing.value_range == 1.0 and meta.source["kind"] == "torchvision"
    for i, wnid in enumerate(["n01440764", "n02102040", "n03888257"]):
        write_image(tmp_path / "val" / wnid / f"{i}.JPEG", (48, 40), fmt="JPEG", seed=i)
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(tmp_path / "vgg13.safetensors"),
                "--data",
                str(tmp_path / "val"),
                "--protocol",
                "center",
                "dense",
                "--scales",
                "32,40",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "3 images" in out and "dense" in out


def test_predict_names_and_probabilities(tmp_path, capsys):
    model = init_weights(tiny("A", num_classes=3), "glorot")
    save_weights(
        tmp_path / "w.safetensors",
        model,
        dict(
            classes=["n01440764", "n02102040", "cars"], preprocessing=PRE, train=dict(scale=[40, 40], crop=32)
        ),
    )
    write_image(tmp_path / "a.png", (50, 40))
    pil = Image.open(tmp_path / "a.png")
    by_path = predict(str(tmp_path / "w.safetensors"), [str(tmp_path / "a.png")], top=3)[0]
    by_pil = predict(str(tmp_path / "w.safetensors"), pil, top=3)[0]
    assert [t["class"] for t in by_path["top"]] == [t["class"] for t in by_pil["top"]]
    probs = [t["prob"] for t in by_path["top"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    names = {t["class"]: t["name"] for t in by_path["top"]}
    assert names["n01440764"] == "tench" and names["cars"] == "cars"
    # the dense protocol at crop size equals the centre crop with its flip; multi-scale gives three Q
    assert predict(str(tmp_path / "w.safetensors"), pil, multi_scale=True)[0]["scales"] == [35, 40, 45]
    assert (
        main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "w.safetensors"), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["rank"] == 1
    assert main(["predict", str(tmp_path / "none.png"), "--checkpoint", str(tmp_path / "w.safetensors")]) == 2
    assert "none.png" in capsys.readouterr().err


def test_fine_tuning_to_a_new_class_count_inherits_the_preprocessing(tmp_path):
    make_synthetic(tmp_path / "d", classes=3, per_class=8, val_per_class=2, size=40, seed=4, workers=1)
    source = init_weights(tiny("A", num_classes=5), "glorot")
    tv = dict(channel_order="RGB", value_range=1.0, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    save_weights(tmp_path / "src.safetensors", source, dict(classes=list("abcde"), preprocessing=tv))
    base = dict(
        arch="A",
        width=1 / 16,
        fc_dim=32,
        crop=32,
        scale="32:40",
        data=str(tmp_path / "d/train"),
        val_data=str(tmp_path / "d/val"),
        batch_size=8,
        epochs=1,
        workers=0,
        progress=False,
        dropout=0.0,
        lr=1e-9,
        weight_decay=0.0,
        init_from=str(tmp_path / "src.safetensors"),
    )
    train(load_config(None, dict(base, out=str(tmp_path / "ft"))))
    tuned, meta = load_model(tmp_path / "ft/final.safetensors")
    assert meta.train.warm_start["layers"][-1] == "fc7" and tuned.num_classes == 3
    assert torch.allclose(
        tuned.weight_layers()["fc7"].weight, source.weight_layers()["fc7"].weight, atol=1e-6
    )
    assert (meta.preprocessing.value_range, meta.preprocessing.std) == (1.0, tuple(tv["std"]))
    assert meta.preprocessing.has_pca  # the colour shift still comes from the new data
    from vggnet.data import compute_stats, image_folder, save_stats

    save_stats(tmp_path / "stats.json", compute_stats(image_folder(tmp_path / "d/train")))
    with pytest.raises(VGGError, match="keeps the source's preprocessing"):
        train(load_config(None, dict(base, out=str(tmp_path / "ft2"), stats=str(tmp_path / "stats.json"))))
    assert not (tmp_path / "ft2").exists()


def test_vggnet_to_torchvision_and_back_keeps_outputs_and_classes(tmp_path, capsys):
    model = init_weights(tiny("D", num_classes=4), "glorot").eval()
    save_weights(tmp_path / "w.safetensors", model, dict(classes=list("wxyz"), preprocessing=PRE))
    assert main(["convert", str(tmp_path / "w.safetensors"), str(tmp_path / "tv.pth")]) == 0
    assert "folded into conv1_1" in capsys.readouterr().out
    assert (tmp_path / "tv.classes.txt").read_text().split() == list("wxyz")
    assert main(["convert", str(tmp_path / "tv.pth"), str(tmp_path / "back.safetensors")]) == 0
    back, meta = load_model(tmp_path / "back.safetensors")
    assert meta.classes == list("wxyz") and meta.preprocessing.value_range == 1.0
    from vggnet.data.transforms import Normalizer

    x = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    a = model.features(Normalizer(PRE)(x))[inner]
    b = back.eval().features(Normalizer(meta.preprocessing)(x))[inner]
    assert torch.allclose(a, b, atol=1e-3)  # exact away from the border, where padding differs


def test_forward_and_dense_trace_with_fx_and_jit():
    model = tiny("C", num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x), atol=1e-6)
    traced = torch.jit.trace(model, x, check_trace=False)
    assert torch.allclose(traced(x), model(x), atol=1e-6)

    class Dense(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, images):
            return self.m.dense(images)

    y = torch.randn(1, 3, 96, 64)
    assert torch.allclose(torch.fx.symbolic_trace(Dense(model))(y), model.dense(y), atol=1e-6)


@pytest.mark.parametrize("arch, dense", [("A", False), ("A", True), ("A-LRN", False)])
def test_onnx_export_is_checked_with_onnx_runtime(tmp_path, arch, dense, capsys):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'vggnet[onnx]')")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'vggnet[onnx]')")
    model = init_weights(tiny(arch, num_classes=3), "glorot")
    save_weights(tmp_path / "w.safetensors", model, dict(classes=list("abc"), preprocessing=PRE))
    out = tmp_path / "m.onnx"
    assert (
        main(["export", str(tmp_path / "w.safetensors"), "--onnx", str(out)] + (["--dense"] if dense else []))
        == 0
    )
    assert "checked with ONNX Runtime" in capsys.readouterr().out
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randint(0, 256, (3, 3, 64, 96) if dense else (3, 3, 32, 32), dtype=torch.uint8)
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    from vggnet.data.transforms import Normalizer

    with torch.no_grad():
        ref = model.eval().dense(Normalizer(PRE)(x)) if dense else model.eval()(Normalizer(PRE)(x))
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    assert main(["export", str(tmp_path / "w.safetensors"), "--onnx", str(out)]) == 2  # no overwrite


@pytest.mark.parametrize("dense", [False, True])
def test_onnx_export_writes_its_input_contract_and_class_names_beside_and_inside(tmp_path, dense, capsys):
    """The layout, dtype and the size an image is resized and cropped to, and each class's id and
    readable name, in NAME.json and in the model's metadata_props: a deployment needs nothing else."""
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'vggnet[onnx]')")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install 'vggnet[onnx]')")
    import onnx

    classes = ["n01440764", "n02102040", "mine"]  # two ImageNet wnids and a class of one's own
    model = init_weights(tiny("A", num_classes=3), "glorot")
    train = dict(scale=[40, 56], crop=32)
    save_weights(tmp_path / "w.safetensors", model, dict(classes=classes, preprocessing=PRE, train=train))
    out = tmp_path / "m.onnx"
    argv = ["export", str(tmp_path / "w.safetensors"), "--onnx", str(out)] + (["--dense"] if dense else [])
    assert main(argv) == 0
    said = capsys.readouterr().out
    assert "NCHW" in said and "resize the smallest side to 48" in said
    assert str(out.with_suffix(".json")) in said
    beside = json.loads(out.with_suffix(".json").read_text())
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    for contract, names in (
        (beside["input"], beside["classes"]),
        (json.loads(props["vggnet.input"]), json.loads(props["vggnet.classes"])),
    ):
        assert (contract["layout"], contract["dtype"], contract["channels"]) == ("NCHW", "uint8", "RGB")
        assert contract["resize_smallest_side"] == 48  # the middle of the jittered training range (§4.1)
        assert contract["crop"] == (None if dense else 32)
        assert contract["shape"] == (["N", 3, "H", "W"] if dense else ["N", 3, 32, 32])
        assert names == [
            {"class": "n01440764", "name": "tench"},
            {"class": "n02102040", "name": "English springer"},
            {"class": "mine", "name": "mine"},
        ]
    assert out.with_name("m.classes.txt").read_text().split() == classes
    assert main(["export", str(tmp_path / "w.safetensors"), "--onnx", str(tmp_path / "n.onnx")]) == 0
    out.unlink()  # a contract left beside a model is not replaced without --force either
    out.with_name("m.classes.txt").unlink()
    assert main(["export", str(tmp_path / "w.safetensors"), "--onnx", str(out)]) == 2
    assert "m.json" in capsys.readouterr().err


def test_imagenet_labels_command(tmp_path, capsys):
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\nILSVRC2012_val_00000002,n01440764 1 2 30 40\n"
        "ILSVRC2012_val_00000001,n02102040 5 5 20 20 n02102040 1 1 9 9\n"
    )
    assert (
        main(
            [
                "data",
                "imagenet-labels",
                "--loc-solution",
                str(tmp_path / "LOC_val_solution.csv"),
                "--out",
                str(tmp_path / "val.csv"),
            ]
        )
        == 0
    )
    lines = (tmp_path / "val.csv").read_text().splitlines()
    assert (
        lines[0] == "path,label"
        and lines[1].startswith("ILSVRC2012_val_00000001")
        and lines[1].endswith("n02102040")
    )
    assert main(["data", "imagenet-labels", "--out", str(tmp_path / "x.csv")]) == 2


def test_export_needs_the_extra_when_missing(tmp_path):
    """Without the onnx packages the command says what to install (checked in a clean interpreter)."""
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from vggnet.cli import main; raise SystemExit(main(['export', 'w.safetensors', '--onnx', 'm.onnx']))"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 2 and "pip install 'vggnet[onnx]'" in r.stderr and "Traceback" not in r.stderr
