"""The contact sheet: boxes drawn in the right colours, at the right places, written atomically."""

import numpy as np
import pytest
from PIL import Image

from vggnet.errors import VGGError
from vggnet.localization.gallery import GT_COLOUR, RIGHT_COLOUR, WRONG_COLOUR, contact_sheet


def count(arr, colour):
    return int((np.abs(arr.astype(int) - colour).sum(axis=2) < 30).sum())


def test_contact_sheet_draws_gt_right_and_wrong_boxes(tmp_path):
    grey = Image.new("RGB", (200, 100), (128, 128, 128))
    path_img = tmp_path / "img.png"
    Image.new("RGB", (50, 50), (90, 90, 90)).save(path_img)
    items = [
        dict(
            image=grey,
            gt_boxes=[[10, 10, 90, 90]],
            gt_labels=["dog"],
            pred_boxes=[[12, 12, 88, 88]],
            pred_labels=["dog"],
            pred_correct=[True],
            caption="IoU 0.90",
        ),
        dict(
            image=path_img,
            gt_boxes=[[0, 0, 25, 25]],
            pred_boxes=[[30, 30, 50, 50]],
            pred_labels=["cat"],
            pred_correct=[False],
        ),
    ]
    out = contact_sheet(items, tmp_path / "sheet.png", cols=2, thumb=128, title="loc")
    assert out == tmp_path / "sheet.png" and sorted(p.name for p in tmp_path.iterdir()) == [
        "img.png",
        "sheet.png",
    ]
    arr = np.asarray(Image.open(out).convert("RGB"))
    assert arr.shape[1] == 2 * (128 + 6) + 6
    assert count(arr, GT_COLOUR) > 100 and count(arr, RIGHT_COLOUR) > 100 and count(arr, WRONG_COLOUR) > 100
    # the first tile (left) holds the correct guess, the second (right) the wrong one
    mid = arr.shape[1] // 2
    header = 40  # below the title and legend
    assert count(arr[header:, :mid], RIGHT_COLOUR) > 100 and count(arr[header:, :mid], WRONG_COLOUR) == 0
    assert count(arr[header:, mid:], WRONG_COLOUR) > 100 and count(arr[header:, mid:], RIGHT_COLOUR) == 0


def test_contact_sheet_refuses_nothing_to_draw(tmp_path):
    with pytest.raises(VGGError, match="no images"):
        contact_sheet([], tmp_path / "s.png")
    assert not (tmp_path / "s.png").exists()
