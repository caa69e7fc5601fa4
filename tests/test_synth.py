import csv
import subprocess
import sys

import pytest
from PIL import Image

from vggnet.data.datasets import image_folder
from vggnet.data.synth import class_names, make_synthetic
from vggnet.errors import VGGError


def test_synthetic_dataset_layout_boxes_and_determinism(tmp_path):
    info = make_synthetic(tmp_path / "a", classes=4, per_class=3, val_per_class=2, size=64, seed=1)
    src = image_folder(tmp_path / "a" / "train")
    assert src.classes == sorted(class_names(4)) and len(src) == 12
    assert len(image_folder(tmp_path / "a" / "val")) == 8
    with open(tmp_path / "a" / "boxes-train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and set(rows[0]) == {"path", "wnid", "xmin", "ymin", "xmax", "ymax"}
    for r in rows:
        img = Image.open(tmp_path / "a" / r["path"])
        assert img.format == "JPEG" and img.size == (64, 64)
        x0, y0, x1, y1 = (int(r[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64 and (x1 - x0) >= 5
        assert r["path"].split("/")[1] == r["wnid"]
    make_synthetic(tmp_path / "b", classes=4, per_class=3, val_per_class=2, size=64, seed=1, workers=2)
    for r in rows:
        assert (tmp_path / "a" / r["path"]).read_bytes() == (tmp_path / "b" / r["path"]).read_bytes()
    make_synthetic(tmp_path / "c", classes=4, per_class=3, size=64, seed=2)
    assert (tmp_path / "c" / rows[0]["path"]).read_bytes() != (tmp_path / "a" / rows[0]["path"]).read_bytes()
    assert info["classes"] == class_names(4)


def test_synthetic_refusals(tmp_path):
    with pytest.raises(VGGError, match="between 1 and 40"):
        class_names(41)
    make_synthetic(tmp_path / "a", classes=2, per_class=1, size=32)
    out = subprocess.run(
        [sys.executable, "-m", "vggnet", "data", "synth", "--out", str(tmp_path / "a")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "not empty" in out.stderr
    assert len(class_names(40)) == len(set(class_names(40)))
