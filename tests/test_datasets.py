import pytest

from helpers import make_folder, write_image
from vggnet.data.datasets import file_list, image_folder, open_source, split_holdout
from vggnet.errors import VGGError


def test_image_folder_classes_and_order(tmp_path):
    make_folder(tmp_path / "d", classes=("zebra", "ant", "moth"), per_class=3)
    src = image_folder(tmp_path / "d")
    assert src.classes == ["ant", "moth", "zebra"]
    assert len(src) == 9 and [label for _, label in src.samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert src.ids[0] == "ant/ant0.png"
    # A checkpoint's class order is kept; a folder outside it is refused.
    src2 = image_folder(tmp_path / "d", classes=["zebra", "moth", "ant", "bee"])
    assert src2.samples[0][1] == 2
    with pytest.raises(VGGError, match="not among"):
        image_folder(tmp_path / "d", classes=["ant", "moth"])


def test_file_list_csv_and_tsv(tmp_path):
    make_folder(tmp_path / "imgs", classes=("x",), per_class=3)
    (tmp_path / "labels.csv").write_text(
        "path,label\nimgs/x/x0.png,cat\nimgs/x/x1.png,dog\nimgs/x/x2.png,cat\n"
    )
    src = file_list(tmp_path / "labels.csv")
    assert src.classes == ["cat", "dog"] and [l for _, l in src.samples] == [0, 1, 0]
    (tmp_path / "val.tsv").write_text("x/x0.png\t3\nx/x1.png\t10\n")
    src = open_source(tmp_path / "val.tsv", root=tmp_path / "imgs")
    assert src.classes == ["3", "10"]


def test_refusals(tmp_path):
    with pytest.raises(VGGError, match="not found"):
        open_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VGGError, match="no class sub-folders"):
        image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    (tmp_path / "empty" / "cls" / "readme.txt").write_text("x")
    with pytest.raises(VGGError, match="no image files"):
        image_folder(tmp_path / "empty")
    write_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("a.png,cat\nmissing1.png,dog\nmissing2.png,dog\n")
    with pytest.raises(VGGError, match="2 listed images do not exist.*missing1.png"):
        file_list(tmp_path / "l.csv")
    (tmp_path / "l2.csv").write_text("a.png,cat\n")
    with pytest.raises(VGGError, match="not among"):
        file_list(tmp_path / "l2.csv", classes=["dog"])
    (tmp_path / "l3.csv").write_text("path,label\n")
    with pytest.raises(VGGError, match="lists no images"):
        file_list(tmp_path / "l3.csv")


def test_holdout_is_stratified_and_deterministic(tmp_path):
    src = image_folder(make_folder(tmp_path / "d", per_class=10))
    train, held = split_holdout(src, 0.2, seed=1)
    assert len(held) == 6 and len(train) == 24
    assert sorted(l for _, l in held.samples) == [0, 0, 1, 1, 2, 2]
    assert not set(p for p, _ in train.samples) & set(p for p, _ in held.samples)
    assert split_holdout(src, 0.2, seed=1)[1].samples == held.samples
