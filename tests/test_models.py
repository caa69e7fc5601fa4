import subprocess
import sys

import pytest
import torch

from conftest import tiny
from vggnet.errors import VGGError
from vggnet.models import (
    WARM_START_LAYERS,
    check_state_dict,
    complexity,
    create_model,
    export_torchvision,
    import_torchvision,
    init_weights,
    list_models,
    load_model,
    save_weights,
    warm_start,
)
from vggnet.models.configs import LRN_PARAMS
from vggnet.models.vgg import LocalResponseNorm

# Table 2: exact parameter counts at the defaults (1000 classes, 224 crop).
EXPECTED_PARAMS = {
    "A": 132_863_336,
    "A-LRN": 132_863_336,
    "B": 133_047_848,
    "C": 133_638_952,
    "D": 138_357_544,
    "E": 143_667_240,
    "B-5x5": 134_503_528,
}
EXPECTED_GMACS = {"A": 7.61, "B": 11.31, "D": 15.47, "E": 19.63}
# torchvision's vgg16 / vgg16_bn conv positions in `features` (its published key layout).
TV_VGG16_CONVS = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
TV_VGG16_BN_CONVS = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]


def test_registry_lists_all_configs():
    assert list_models() == ["A", "A-LRN", "B", "C", "D", "E", "B-5x5"]


@pytest.mark.parametrize("name", list_models())
def test_exact_parameter_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]
    assert complexity(name)["params"] == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", list(EXPECTED_GMACS))
def test_macs_match_paper(name):
    assert round(complexity(name)["macs"] / 1e9, 2) == EXPECTED_GMACS[name]


def test_fc6_share_of_d():
    with torch.device("meta"):
        model = create_model("D")
    assert model.classifier[0].weight.numel() + model.classifier[0].bias.numel() == 102_764_544


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("crop", [32, 64])
def test_forward_and_dense_agree_on_crop(name, crop):
    model = tiny(name, num_classes=7, crop_size=crop).eval()
    x = torch.randn(3, 3, crop, crop)
    logits = model(x)
    dense = model.dense(x)
    assert logits.shape == (3, 7)
    assert dense.shape == (3, 7, 1, 1)
    assert (logits - dense[..., 0, 0]).abs().max().item() <= 1e-5


def test_dense_score_map_size_and_window_equivalence():
    model = tiny("B", crop_size=64).eval()
    x = torch.randn(1, 3, 96, 160)
    scores = model.dense(x)
    assert scores.shape == (1, 5, 96 // 32 - 1, 160 // 32 - 1)
    # Each score-map position sees a crop-sized window of pool5; the corner window of the dense
    # map equals the FC net on the pool5 window (receptive field grows, boundary conditions differ
    # for the raw image, so compare at pool5).
    pool5 = model.features(x)
    window = pool5[..., :2, :2]
    fc = model.classifier(torch.flatten(window, 1))
    assert torch.allclose(fc, scores[..., 0, 0], atol=1e-5)


def test_dense_on_sizes_that_are_not_multiples_of_32():
    model = tiny("A", crop_size=32).eval()
    x = torch.randn(1, 3, 55, 100)
    scores = model.dense(x)
    assert scores.shape[-2:] == (1, 3)  # floor(55/32), floor(100/32): torchvision's pooling
    assert torch.isfinite(scores).all()


def test_bad_sizes_and_names_are_refused():
    with pytest.raises(VGGError, match="multiple of 32"):
        create_model("A", crop_size=100)
    with pytest.raises(VGGError, match="multiple of 32"):
        create_model("A", crop_size=0)
    with pytest.raises(VGGError, match="valid: A, A-LRN, B, C, D, E, B-5x5"):
        create_model("F")
    with pytest.raises(VGGError, match="num_classes"):
        create_model("A", 0)
    model = tiny("A")
    with pytest.raises(VGGError, match="dense"):
        model(torch.randn(1, 3, 64, 64))
    with pytest.raises(VGGError, match=">= crop size"):
        model.dense(torch.randn(1, 3, 16, 64))


@pytest.mark.parametrize("name", list_models())
def test_named_layers(name):
    model = tiny(name)
    names = model.feature_names()
    convs = [n for n in names if n.startswith("conv")]
    from vggnet.models import weight_layers

    assert len(convs) + 3 == weight_layers(name)
    assert {"pool5", "fc6", "fc7", "fc8"} <= set(names)
    assert all(n.split("_")[0][4:].isdigit() and n.split("_")[1].isdigit() for n in convs)
    out = model.eval().extract(torch.randn(2, 3, 32, 32), [convs[-1], "pool5", "fc7"])
    assert out["fc7"].shape == (2, 32)
    assert out["fc7"].min() >= 0  # after ReLU
    assert out[convs[-1]].min() >= 0
    assert out["pool5"].shape[-2:] == (1, 1)


def test_extract_matches_forward_and_unknown_names():
    model = tiny("D").eval()
    x = torch.randn(2, 3, 32, 32)
    out = model.extract(x, ["conv5_3", "fc8"])
    assert torch.allclose(out["fc8"], model(x), atol=1e-6)
    dense = model.extract(torch.randn(1, 3, 96, 64), ["fc7"])["fc7"]
    assert dense.shape == (1, 32, 3, 2)
    with pytest.raises(VGGError, match="conv5_3"):
        model.extract(x, ["conv5_4"])


def test_lrn_and_1x1_and_5x5_layers():
    alrn = tiny("A-LRN")
    lrn = next(m for m in alrn.features if isinstance(m, torch.nn.LocalResponseNorm))
    assert lrn.size == 5 and lrn.beta == 0.75 and lrn.k == 2
    # Krizhevsky's formula with alpha = 1e-4 *not* divided by the window: b = a / (2 + 1e-4 sum a^2)^0.75
    n = alrn.weight_layers()["conv1_1"].out_channels
    a = torch.rand(1, n, 3, 3) * 30
    sq = torch.nn.functional.pad(a.pow(2), (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i : i + n] for i in range(5))
    assert torch.allclose(lrn(a), a / (2 + 1e-4 * window) ** 0.75, rtol=1e-5)
    c = tiny("C").weight_layers()
    assert c["conv3_3"].kernel_size == (1, 1) and c["conv3_3"].padding == (0, 0)
    assert c["conv3_2"].kernel_size == (3, 3) and c["conv3_2"].padding == (1, 1)
    s = tiny("B-5x5").weight_layers()
    assert s["conv1_1"].kernel_size == (5, 5) and "conv1_2" not in s


def test_batch_norm_variant():
    model = tiny("D", batch_norm=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.features) == 13


def test_gaussian_and_glorot_init():
    model = create_model("A", 10, width=0.5, fc_dim=256, crop_size=64)
    init_weights(model, "gaussian", std=0.01)
    w = model.weight_layers()["conv3_1"].weight
    assert abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001
    assert all(layer.bias.abs().max() == 0 for layer in model.weight_layers().values())
    init_weights(model, "glorot")
    w = model.weight_layers()["fc7"].weight
    bound = (6 / (256 + 256)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    with pytest.raises(VGGError, match="gaussian, glorot"):
        init_weights(model, "he")


@pytest.mark.parametrize("deep", ["B", "C", "D", "E"])
def test_warm_start_copies_exactly_the_paper_layers(deep):
    a = init_weights(tiny("A"), "gaussian")
    target = init_weights(tiny(deep), "glorot")
    before = {k: v.weight.clone() for k, v in target.weight_layers().items()}
    copied = warm_start(target, a)
    assert copied == list(WARM_START_LAYERS)
    src = a.weight_layers()
    for name, layer in target.weight_layers().items():
        if name in WARM_START_LAYERS:
            assert torch.equal(layer.weight, src[name].weight) and torch.equal(layer.bias, src[name].bias)
        else:
            assert torch.equal(layer.weight, before[name]), name


def test_warm_start_refuses_incompatible_source_untouched():
    a = tiny("A", width=1 / 8)
    target = tiny("D")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(VGGError, match=r"conv1_1.*\(4, 3, 3, 3\).*\(8, 3, 3, 3\)|conv1_1.*shape"):
        warm_start(target, a)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())
    with pytest.raises(VGGError, match="conv1_2"):
        warm_start(target, tiny("A"), layers=["conv1_2"])


def test_torchvision_key_layout():
    keys = [k for k in create_model("D", 5, width=1 / 16, fc_dim=8).state_dict() if k.startswith("features")]
    assert keys == [f"features.{i}.{p}" for i in TV_VGG16_CONVS for p in ("weight", "bias")]
    bn = create_model("D", 5, width=1 / 16, fc_dim=8, batch_norm=True).state_dict()
    assert [
        int(k.split(".")[1]) for k in bn if k.endswith(".weight") and bn[k].dim() == 4
    ] == TV_VGG16_BN_CONVS
    assert {"classifier.0.weight", "classifier.3.weight", "classifier.6.bias"} <= set(bn)


@pytest.mark.parametrize("name,bn", [("A", False), ("B", True), ("D", False), ("E", True)])
def test_torchvision_round_trip_exact(tmp_path, name, bn):
    model = tiny(name, crop_size=64, batch_norm=bn)
    export_torchvision(model, tmp_path / "tv.pth")
    state = torch.load(tmp_path / "tv.pth", weights_only=True)
    assert set(state) == set(model.state_dict())
    back, meta = import_torchvision(tmp_path / "tv.pth")
    assert back.arch == name and back.spec.batch_norm == bn and back.crop_size == 64
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    assert meta.preprocessing.value_range == 1.0
    export_torchvision(back, tmp_path / "tv2.pth")
    again = torch.load(tmp_path / "tv2.pth", weights_only=True)
    assert all(torch.equal(v, again[k]) for k, v in state.items())


def test_torchvision_mismatch_names_key_and_shapes(tmp_path):
    state = tiny("D").state_dict()
    state["features.28.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(VGGError, match=r"features.28.weight.*\(3, 3, 3, 3\).*\(32, 32, 3, 3\)"):
        import_torchvision(tmp_path / "bad.pth")
    with pytest.raises(VGGError, match="no counterpart"):
        export_torchvision(tiny("C"), tmp_path / "c.pth")
    with pytest.raises(VGGError, match="vgg11"):
        import_torchvision(tmp_path / "bad.pth", arch="vgg99")


def test_vggnet_weights_round_trip_and_metadata(tmp_path):
    model = tiny("C", crop_size=64, batch_norm=True)
    meta = {"classes": ["a", "b", "c", "d", "e"], "preprocessing": {"mean": [1.0, 2.0, 3.0]}}
    save_weights(tmp_path / "w.safetensors", model, meta)
    back, meta2 = load_model(tmp_path / "w.safetensors")
    assert meta2.classes == meta["classes"] and meta2.model == model.spec
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(VGGError, match="without vggnet metadata"):
        load_model(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(VGGError, match="not a readable"):
        load_model(tmp_path / "junk.safetensors")


def test_check_state_dict_unexpected_key():
    model = tiny("A")
    state = dict(model.state_dict(), extra=torch.zeros(2))
    with pytest.raises(VGGError, match="unexpected key 'extra'"):
        check_state_dict(model, state)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vggnet", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_info_prints_tables_1_and_2():
    out = run_cli("info")
    assert out.returncode == 0, out.stderr
    for name, count in EXPECTED_PARAMS.items():
        line = next(l for l in out.stdout.splitlines() if l.split()[0] == name)
        assert f"{count:,}" in line
    assert "15.47" in out.stdout and "conv1-256" in out.stdout


def test_cli_convert_both_ways_and_no_overwrite(tmp_path):
    export_torchvision(tiny("B"), tmp_path / "tv.pth")
    out = run_cli("convert", str(tmp_path / "tv.pth"), str(tmp_path / "ours.safetensors"))
    assert out.returncode == 0, out.stderr
    model, _ = load_model(tmp_path / "ours.safetensors")
    assert model.arch == "B"
    out = run_cli("convert", str(tmp_path / "ours.safetensors"), str(tmp_path / "back.pth"))
    assert out.returncode == 0, out.stderr
    assert torch.equal(
        torch.load(tmp_path / "back.pth", weights_only=True)["features.0.weight"],
        model.state_dict()["features.0.weight"],
    )
    before = (tmp_path / "back.pth").read_bytes()
    out = run_cli("convert", str(tmp_path / "ours.safetensors"), str(tmp_path / "back.pth"))
    assert out.returncode == 2 and "refusing to overwrite" in out.stderr and "Traceback" not in out.stderr
    assert (tmp_path / "back.pth").read_bytes() == before


@pytest.mark.parametrize("channels", [3, 8, 17])
def test_lrn_is_pytorchs_function_with_its_gradient_and_takes_bf16(channels):
    lrn = LocalResponseNorm(channels, **LRN_PARAMS)
    a = (torch.rand(2, channels, 5, 4) * 40).requires_grad_()
    b = a.detach().clone().requires_grad_()
    ours = lrn(a)
    theirs = torch.nn.functional.local_response_norm(b, lrn.size, lrn.alpha, lrn.beta, lrn.k)
    assert torch.allclose(ours, theirs, rtol=1e-5)
    ours.pow(2).sum().backward()
    theirs.pow(2).sum().backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7)
    half = lrn(a.detach().bfloat16())  # PyTorch's own layer raises here on the CPU
    assert half.dtype == torch.bfloat16
    assert torch.allclose(half.float(), theirs.detach(), rtol=0.03)


def test_lrn_net_keeps_pytorchs_checkpoint_keys_and_traces():
    model = tiny("A-LRN").eval()
    assert not any("window" in k for k in model.state_dict())
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(torch.fx.symbolic_trace(model)(x), model(x), atol=1e-6)
