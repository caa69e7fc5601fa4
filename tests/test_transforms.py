import numpy as np
import pytest
import torch
from PIL import Image

from vggnet.data.transforms import (
    Normalizer,
    TrainTransform,
    check_scale,
    grid_positions,
    multicrop,
    rescale,
    scaled_size,
)
from vggnet.errors import VGGError


def gradient_image(w, h):
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


@pytest.mark.parametrize("w,h", [(500, 375), (375, 500), (100, 100), (40, 900), (31, 17)])
@pytest.mark.parametrize("s", [32, 64, 257])
def test_smallest_side_is_exactly_s(w, h, s):
    W, H = scaled_size(w, h, s)
    assert min(W, H) == s
    assert abs(W / H - w / h) <= 2 / s  # isotropic up to rounding
    assert rescale(gradient_image(w, h), s).size == (W, H)


def test_jittered_s_covers_range_and_crops_stay_inside():
    t = TrainTransform("40:56", 32)
    img = gradient_image(120, 80)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(400):
        s = int(rng.integers(t.smin, t.smax + 1))
        arr, info = t.apply(img, s, rng)
        seen.add(info["S"])
        w, h = info["size"]
        assert min(w, h) == info["S"] and arr.shape == (32, 32, 3)
        assert 0 <= info["x"] <= w - 32 and 0 <= info["y"] <= h - 32
    assert min(seen) == 40 and max(seen) == 56 and len(seen) == 17


def test_crop_equals_rescale_then_crop_and_flip():
    t = TrainTransform(64, 32, flip=False)
    img = gradient_image(150, 100)
    arr, info = t.apply(img, 64, np.random.default_rng(3))
    full = np.asarray(img.resize(info["size"], Image.BILINEAR))
    ref = full[info["y"] : info["y"] + 32, info["x"] : info["x"] + 32]
    assert np.abs(arr.astype(int) - ref.astype(int)).max() <= 2
    tf = TrainTransform(64, 32, flip=True)
    flips = [tf.apply(img, 64, np.random.default_rng(i)) for i in range(200)]
    rate = np.mean([info["flipped"] for _, info in flips])
    assert 0.4 < rate < 0.6
    arr2, info2 = next((a, i) for a, i in flips if i["flipped"])
    ref2 = full[info2["y"] : info2["y"] + 32, info2["x"] : info2["x"] + 32][:, ::-1]
    assert np.abs(arr2.astype(int) - ref2.astype(int)).max() <= 2


def test_impossible_scales_refused():
    with pytest.raises(VGGError, match="smaller than the crop"):
        check_scale(200, 224)
    with pytest.raises(VGGError, match="Smin must be <= Smax"):
        check_scale("512:256", 224)
    with pytest.raises(VGGError, match="S or Smin:Smax"):
        check_scale("big", 224)


def test_multicrop_grid_hits_both_corners():
    pos = grid_positions(100, 70, 32)
    assert len(pos) == 25 and pos[0] == (0, 0) and pos[-1] == (68, 38)
    assert sorted({x for x, _ in pos}) == [0, 17, 34, 51, 68]
    image = torch.arange(3 * 70 * 100, dtype=torch.int64).reshape(3, 70, 100).to(torch.uint8)
    crops = multicrop(image, 32)
    assert crops.shape == (50, 3, 32, 32)
    assert torch.equal(crops[0], image[:, :32, :32]) and torch.equal(crops[24], image[:, -32:, -32:])
    assert torch.equal(crops[25], crops[0].flip(-1))
    with pytest.raises(VGGError):
        grid_positions(20, 70, 32)


def test_normalizer_preprocessing_conventions():
    x = torch.tensor([[[[10]], [[20]], [[30]]]], dtype=torch.uint8)
    ours = Normalizer(dict(channel_order="RGB", value_range=255, mean=[1, 2, 3], std=[1, 1, 1]))
    assert ours(x).flatten().tolist() == [9, 18, 27]
    tv = Normalizer(dict(channel_order="RGB", value_range=1.0, mean=[0.5, 0.5, 0.5], std=[0.5, 0.25, 0.5]))
    assert torch.allclose(
        tv(x).flatten(),
        torch.tensor([(10 / 255 - 0.5) / 0.5, (20 / 255 - 0.5) / 0.25, (30 / 255 - 0.5) / 0.5]),
    )
    caffe = Normalizer(dict(channel_order="BGR", value_range=255, mean=[3, 2, 1], std=[1, 1, 1]))
    assert caffe(x).flatten().tolist() == [27, 18, 9]


def test_colour_shift_statistics():
    rot = torch.linalg.qr(torch.randn(3, 3))[0]
    eigval = torch.tensor([4000.0, 400.0, 40.0])
    norm = Normalizer(dict(mean=[0, 0, 0], pca_eigval=eigval.tolist(), pca_eigvec=rot.tolist()))
    rng = np.random.default_rng(0)
    t = TrainTransform(32, 32)
    img = gradient_image(32, 32)
    alphas = np.stack([t.apply(img, 32, rng)[1]["alpha"] for _ in range(2000)])
    assert abs(alphas.std() - 0.1) < 0.005  # alpha ~ N(0, 0.1), drawn per image
    shifts = norm.colour_shift(
        torch.randn(200_000, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    ).double()
    assert shifts.mean(0).abs().max() < 0.05
    cov = torch.cov(shifts.T)
    expected = rot.double() @ torch.diag((0.1 * eigval.double() / 255) ** 2) @ rot.double().T
    assert torch.allclose(cov, expected, rtol=0.03, atol=1e-3)
    # Along each eigenvector the shift's std is 0.1 * lambda / 255.
    proj = shifts @ rot.double()
    assert torch.allclose(proj.std(0), 0.1 * eigval.double() / 255, rtol=0.02)
    # The same shift is added to every pixel of an image.
    x = torch.full((2, 3, 4, 4), 100, dtype=torch.uint8)
    y = norm(x, alpha=torch.tensor([[0.1, -0.2, 0.05], [0.3, 0.0, 0.0]]))
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y)) and not torch.allclose(
        y, torch.full_like(y, 100.0)
    )
