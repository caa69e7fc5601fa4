import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import write_image
from vggnet.data.images import ImageReadError, load_rgb


def test_odd_but_valid_files_become_rgb(tmp_path):
    write_image(tmp_path / "grey.jpg", mode="L")
    write_image(tmp_path / "cmyk.jpg", mode="CMYK")
    write_image(tmp_path / "rgba.png", mode="RGBA")
    write_image(tmp_path / "pal.png", mode="P")
    Image.new("P", (8, 8), 3).save(tmp_path / "paltrans.png", transparency=3)
    Image.new("LA", (5, 7), (200, 0)).save(tmp_path / "la.png")
    write_image(tmp_path / "tiny.png", size=(1, 1))
    write_image(tmp_path / "img.bmp")
    Image.fromarray(np.full((10, 12), 65535, np.uint16)).save(tmp_path / "white16.png")
    Image.fromarray(np.full((10, 12), 32768, np.uint16)).save(tmp_path / "grey16.png")
    for name in [
        "grey.jpg",
        "cmyk.jpg",
        "rgba.png",
        "pal.png",
        "paltrans.png",
        "la.png",
        "tiny.png",
        "img.bmp",
        "white16.png",
        "grey16.png",
    ]:
        img = load_rgb(tmp_path / name)
        assert img.mode == "RGB", name
    # 16-bit values are scaled, not clipped: full scale is white, half scale mid-grey.
    assert np.asarray(load_rgb(tmp_path / "white16.png")).min() == 255
    assert abs(int(np.asarray(load_rgb(tmp_path / "grey16.png"))[0, 0, 0]) - 128) <= 1
    # Transparent pixels are composited on mid-grey.
    assert tuple(np.asarray(load_rgb(tmp_path / "la.png"))[0, 0]) == (128, 128, 128)


def test_huge_jpeg_is_decoded_at_reduced_size(tmp_path):
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(tmp_path / "big.jpg", quality=50)
    img = load_rgb(tmp_path / "big.jpg", min_side=256)
    assert min(img.size) >= 256 and img.size[0] <= 1000  # DCT scaling 1/4 or 1/8
    assert load_rgb(tmp_path / "big.jpg").size == (4000, 3000)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("empty", "empty file"),
        ("text", "not an image"),
        ("truncated", "truncated"),
        ("missing", "not found"),
        ("header_only", ""),
    ],
)
def test_bad_files_raise_with_path_and_reason(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.jpg"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a JPEG\n" * 10)
    elif kind in ("truncated", "header_only"):
        write_image(tmp_path / "full.jpg", size=(200, 150))
        data = (tmp_path / "full.jpg").read_bytes()
        path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[:200])
    with pytest.raises(ImageReadError) as e:
        load_rgb(path)
    assert str(path) in str(e.value) and reason in e.value.reason


def test_data_check_cli_lists_planted_bad_files(tmp_path):
    for i in range(3):
        write_image(tmp_path / "ok" / f"{i}.jpg")
    (tmp_path / "ok" / "zero.jpg").write_bytes(b"")
    (tmp_path / "ok" / "notes.png").write_text("hello")
    out = subprocess.run(
        [sys.executable, "-m", "vggnet", "data", "check", str(tmp_path), "--workers", "2"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "zero.jpg: empty file" in out.stdout and "notes.png: not an image" in out.stdout
    assert "checked 5 images: 3 readable, 2 unreadable" in out.stdout


def _photo(path, size=(96, 64), subsampling=2, mode="RGB", progressive=False, seed=0):
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    arr = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr, "RGB").convert(mode)
    img.save(path, "JPEG", quality=90, subsampling=subsampling, progressive=progressive)
    return path


@pytest.mark.parametrize("kind", ["420", "444", "grey", "progressive"])
def test_fast_jpeg_decoding_matches_pillow(tmp_path, kind, monkeypatch):
    from vggnet.data import images

    if images.simplejpeg is None:
        pytest.skip("simplejpeg is not installed: Pillow decodes every JPEG")
    path = _photo(
        tmp_path / "a.jpg",
        subsampling=0 if kind == "444" else 2,
        mode="L" if kind == "grey" else "RGB",
        progressive=kind == "progressive",
    )
    fast = np.asarray(load_rgb(path), dtype=np.int16)
    monkeypatch.setattr(images, "simplejpeg", None)
    slow = np.asarray(load_rgb(path), dtype=np.int16)
    assert fast.shape == slow.shape and np.abs(fast - slow).max() <= 2


def test_reduced_decode_keeps_the_crop_geometry(tmp_path, monkeypatch):
    """A JPEG decoded at 1/2 size by one decoder and in full by the other gives the same drawn
    crop (S, position, flip, rescaled size) and nearly the same pixels."""
    from vggnet.data import images
    from vggnet.data.transforms import TrainTransform

    path = _photo(tmp_path / "big.jpg", size=(301, 203))
    t = TrainTransform("48:64", 32)
    small = load_rgb(path, min_side=64)
    assert small.size[1] < 203 and images.source_size(small) == (301, 203)
    monkeypatch.setattr(images, "simplejpeg", None)
    full = load_rgb(path)
    for seed in range(5):
        a, da = t.apply(small, 56, np.random.default_rng(seed))
        b, db = t.apply(full, 56, np.random.default_rng(seed))
        assert {k: da[k] for k in ("S", "x", "y", "size", "src_size", "flipped")} == {
            k: db[k] for k in ("S", "x", "y", "size", "src_size", "flipped")
        }
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 12  # same region, differently low-passed


def test_cmyk_jpeg_goes_through_pillow(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, "JPEG")
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == (40, 30) and img.getpixel((5, 5))[0] > 200
