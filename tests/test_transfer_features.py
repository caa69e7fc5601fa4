import numpy as np
import pytest
import torch

from conftest import tiny
from helpers import write_image
from vggnet.data.datasets import image_folder, open_source
from vggnet.data.images import load_rgb
from vggnet.data.multilabel import multilabel_csv
from vggnet.data.transforms import Normalizer, rescale
from vggnet.errors import VGGError
from vggnet.models import init_weights, save_weights
from vggnet.transfer.descriptors import combine_scales, compute_features, descriptor_matrix
from vggnet.transfer.features_file import load_features, save_features, stack_nets

PRE = dict(channel_order="RGB", value_range=255.0, mean=[120.0, 115.0, 100.0], std=[1.0, 1.0, 1.0])
SIZES = [(40, 30), (30, 45), (40, 30), (50, 50), (40, 30)]  # three of one size: batches of 2 split them


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    for i, size in enumerate(SIZES):
        write_image(root / ("a" if i < 3 else "b") / f"img{i}.png", size, seed=i)
    return root


def net():
    return init_weights(tiny("A", num_classes=4), "glorot").eval()


def hand_descriptor(model, path, q, layer):
    """Plain torch ops: rescale, normalise, dense map of `layer`, spatial mean, flip mean."""
    norm = Normalizer(PRE)
    img = rescale(load_rgb(path), q)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
    with torch.no_grad():
        maps = [model.extract(norm(v), [layer])[layer] for v in (x, x.flip(-1))]
    vecs = [m.mean(dim=(2, 3)) if m.dim() == 4 else m for m in maps]
    return ((vecs[0] + vecs[1]) / 2)[0].numpy()


@pytest.mark.parametrize("layer", ["fc7", "pool5"])
def test_descriptor_equals_a_hand_computation(folder, layer):
    model = net()
    source = image_folder(folder)
    f = compute_features(model, Normalizer(PRE), source, [64, 32], layer, batch_size=2)
    assert f["scales"] == [32, 64] and f["ids"] == source.ids and f["labels"].tolist() == [0, 0, 0, 1, 1]
    hand = {q: np.stack([hand_descriptor(model, p, q, layer) for p, _ in source.samples]) for q in (32, 64)}
    # Q = 64 gives a dense map of more than one position (40x30 -> 85x64 -> 2x2 fc7 map).
    assert model.extract(torch.zeros(1, 3, 64, 85), [layer])[layer].shape[-2:] == (2, 2)
    assert np.abs(hand[64]).sum() > 0
    for q in (32, 64):
        np.testing.assert_allclose(f["per_scale"][q], hand[q], rtol=1e-5, atol=1e-6)
    l2 = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    expected = {
        "stack": l2(np.concatenate([hand[32], hand[64]], axis=1)),
        "average": l2((hand[32] + hand[64]) / 2),
        "max": l2(np.maximum(hand[32], hand[64])),
    }
    for mode, want in expected.items():
        np.testing.assert_allclose(descriptor_matrix(f, mode), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(descriptor_matrix(f, "stack", scales=[64]), l2(hand[64]), rtol=1e-5, atol=1e-6)


def test_combine_scales_order_and_unknown_mode():
    a, b = np.ones((2, 3)), np.full((2, 3), 3.0)
    assert combine_scales([a, b], "stack")[0].tolist() == [1, 1, 1, 3, 3, 3]
    assert combine_scales([a, b], "average")[0].tolist() == [2, 2, 2]
    with pytest.raises(VGGError, match="unknown scale combination"):
        combine_scales([a, b], "median")


def test_scale_below_the_crop_and_unknown_layer_are_refused(folder):
    source = image_folder(folder)
    with pytest.raises(VGGError, match="Q=16 is smaller than the crop size 32"):
        compute_features(net(), Normalizer(PRE), source, [16, 32])
    with pytest.raises(VGGError, match="unknown layer 'fc9'"):
        compute_features(net(), Normalizer(PRE), source, [32], layer="fc9")


def test_unreadable_images_fail_or_are_listed(folder):
    (folder / "b" / "broken.png").write_bytes(b"")
    source = image_folder(folder)
    with pytest.raises(VGGError, match="broken.png"):
        compute_features(net(), Normalizer(PRE), source, [32])
    f = compute_features(net(), Normalizer(PRE), source, [32], skip_unreadable=True)
    assert len(f["unreadable"]) == 1 and "broken.png" in f["unreadable"][0]
    assert len(f["ids"]) == len(source) - 1 and not any("broken" in i for i in f["ids"])
    assert f["per_scale"][32].shape == (len(source) - 1, 32)


# -- multi-label label files ----------------------------------------------------------------------
def write_csv(tmp_path, text):
    for name in ("x.png", "y.png", "z.png"):
        write_image(tmp_path / "im" / name, (36, 36))
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_multilabel_csv_reads_the_label_matrix(tmp_path):
    path = write_csv(tmp_path, "path,cat,dog\nim/x.png,1,-1\nim/y.png,0,1\nim/z.png,-1,-1\n")
    s = multilabel_csv(path)
    assert s.classes == ["cat", "dog"] and s.ids == ["im/x.png", "im/y.png", "im/z.png"]
    assert s.targets.dtype == np.int8 and s.targets.tolist() == [[1, -1], [0, 1], [-1, -1]]
    assert open_source(path).targets.tolist() == s.targets.tolist()
    assert s.subset([2, 0]).targets.tolist() == [[-1, -1], [1, -1]]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,cat,dog\nim/x.png,1,-1\nim/y.png,2,1\n", r"labels.csv:3: class 'cat' has value '2'"),
        ("path,cat,dog\nim/x.png,1,-1\nim/y.png,1\n", r"labels.csv:3: 2 columns, the header has 3"),
        ("path,cat,dog\nim/x.png,1,-1\nim/w.png,1,1\n", r"labels.csv:3: image 'im/w.png' does not exist"),
        ("path,cat,dog\nim/x.png,1,-1\nim/x.png,1,1\n", r"labels.csv:3: image 'im/x.png' is listed twice"),
        ("im/x.png,1,-1\n", r"labels.csv:1: expected a header"),
        ("path,cat,cat\nim/x.png,1,-1\n", r"twice in the header"),
    ],
)
def test_multilabel_csv_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(VGGError, match=message):
        multilabel_csv(write_csv(tmp_path, text))


def test_multilabel_features_keep_the_matrix(tmp_path):
    path = write_csv(tmp_path, "path,cat,dog\nim/x.png,1,-1\nim/y.png,0,1\nim/z.png,-1,-1\n")
    f = compute_features(net(), Normalizer(PRE), multilabel_csv(path), [32])
    assert f["label_kind"] == "multi" and f["labels"].tolist() == [[1, -1], [0, 1], [-1, -1]]


# -- features files and fusion --------------------------------------------------------------------
def fake_features(ids, dim, seed, scales=(32, 64), labels=None):
    rng = np.random.default_rng(seed)
    return dict(
        per_scale={q: rng.random((len(ids), dim), dtype=np.float32) for q in scales},
        scales=list(scales),
        ids=list(ids),
        classes=["a", "b"],
        labels=np.array([i % 2 for i in range(len(ids))]) if labels is None else labels,
        label_kind="single",
        layer="fc7",
        data="somewhere",
        nets=[
            dict(checkpoint=f"net{seed}.safetensors", arch="D" if seed == 1 else "E", layer="fc7", dim=dim)
        ],
        unreadable=[],
    )


def test_features_file_round_trips_exactly(folder, tmp_path):
    f = compute_features(net(), Normalizer(PRE), image_folder(folder), [32, 64])
    path = save_features(tmp_path / "f.safetensors", f)
    g = load_features(path)
    for key in ("ids", "classes", "label_kind", "layer", "scales", "nets", "unreadable"):
        assert g[key] == f[key], key
    for q in f["scales"]:
        assert g["per_scale"][q].dtype == np.float32 and np.array_equal(g["per_scale"][q], f["per_scale"][q])
    assert np.array_equal(g["labels"], f["labels"]) and g["path"] == str(path)
    with pytest.raises(VGGError, match="already exists"):
        save_features(path, f)
    save_features(path, f, force=True)


def test_multilabel_features_file_keeps_int8(tmp_path):
    labels = np.array([[1, -1], [0, 1], [-1, -1]], dtype=np.int8)
    f = dict(fake_features(["x", "y", "z"], 4, 0, labels=labels), label_kind="multi")
    g = load_features(save_features(tmp_path / "m.safetensors", f))
    assert g["labels"].dtype == np.int8 and g["labels"].tolist() == labels.tolist()


def test_loading_other_files_is_refused(tmp_path):
    weights = save_weights(tmp_path / "w.safetensors", tiny("A"), {"classes": list("abcde")})
    with pytest.raises(VGGError, match="not a features file .a weights file"):
        load_features(weights)
    (tmp_path / "t.safetensors").write_text("hello")
    with pytest.raises(VGGError, match="not a features file"):
        load_features(tmp_path / "t.safetensors")
    with pytest.raises(VGGError, match="not found"):
        load_features(tmp_path / "none.safetensors")


def test_stack_nets_concatenates_in_the_given_order(tmp_path):
    ids = ["i0", "i1", "i2", "i3"]
    d = load_features(save_features(tmp_path / "d.safetensors", fake_features(ids, 3, 1)))
    e = load_features(save_features(tmp_path / "e.safetensors", fake_features(ids, 5, 2)))
    de, ed = stack_nets([d, e]), stack_nets([e, d])
    for q in (32, 64):
        assert np.array_equal(
            de["per_scale"][q], np.concatenate([d["per_scale"][q], e["per_scale"][q]], axis=1)
        )
        assert np.array_equal(ed["per_scale"][q][:, :5], e["per_scale"][q])
    assert [n["arch"] for n in de["nets"]] == ["D", "E"] and [n["arch"] for n in ed["nets"]] == ["E", "D"]
    assert de["nets"][0]["file"] == d["path"]
    # Each net's descriptor is normalised on its own, then the stack (norm sqrt 2) again.
    x = descriptor_matrix(de, "stack")
    want = np.concatenate([descriptor_matrix(d, "stack"), descriptor_matrix(e, "stack")], axis=1) / np.sqrt(2)
    np.testing.assert_allclose(x, want, rtol=1e-6)
    # A fused set survives a round trip with its nets.
    back = load_features(save_features(tmp_path / "de.safetensors", de))
    np.testing.assert_allclose(descriptor_matrix(back, "average"), descriptor_matrix(de, "average"))


def test_stack_nets_refuses_different_images(tmp_path):
    ids = ["i0", "i1", "i2", "i3"]
    d = load_features(save_features(tmp_path / "d.safetensors", fake_features(ids, 3, 1)))
    cases = {
        "other.safetensors": fake_features(["i0", "i1", "i2", "i9"], 3, 2),
        "order.safetensors": fake_features(["i1", "i0", "i2", "i3"], 3, 2),
        "labels.safetensors": fake_features(ids, 3, 2, labels=np.array([1, 1, 0, 0])),
        "scales.safetensors": fake_features(ids, 3, 2, scales=(32,)),
    }
    messages = {
        "other.safetensors": "different images .4 vs 4 images, 2 in only one",
        "order.safetensors": "another order",
        "labels.safetensors": "different classes or labels",
        "scales.safetensors": "different scales",
    }
    for name, f in cases.items():
        other = load_features(save_features(tmp_path / name, f))
        with pytest.raises(VGGError, match=messages[name]) as e:
            stack_nets([d, other])
        assert str(tmp_path / "d.safetensors") in str(e.value) and name in str(e.value)
    # A common subset of scales can be asked for explicitly.
    fused = stack_nets([d, load_features(tmp_path / "scales.safetensors")], scales=[32])
    assert fused["scales"] == [32] and fused["per_scale"][32].shape == (4, 6)


def test_a_multilabel_csv_is_refused_by_training_and_evaluation_in_one_line(tmp_path, capsys):
    from vggnet.cli import main

    path = write_csv(tmp_path, "path,cat,dog\nim/x.png,1,-1\nim/y.png,0,1\nim/z.png,-1,-1\n")
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "multi-label CSV" in err and "vggnet features" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "last.safetensors").exists()
