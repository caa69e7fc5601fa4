import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vggnet.data.images import ImageReadError, load_rgb
from helpers import write_image


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
    for name in ["grey.jpg", "cmyk.jpg", "rgba.png", "pal.png", "paltrans.png", "la.png", "tiny.png", "img.bmp",
                 "white16.png", "grey16.png"]:
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


@pytest.mark.parametrize("kind,reason", [
    ("empty", "empty file"),
    ("text", "not an image"),
    ("truncated", "truncated"),
    ("missing", "not found"),
    ("header_only", ""),
])
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
    out = subprocess.run([sys.executable, "-m", "vggnet", "data", "check", str(tmp_path), "--workers", "2"],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert "zero.jpg: empty file" in out.stdout and "notes.png: not an image" in out.stdout
    assert "checked 5 files: 3 readable, 2 unreadable" in out.stdout
