"""Boxes (parameterisation, TrainTransform geometry, dense windows) and the ILSVRC localisation error."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vggnet.data.transforms import TrainTransform
from vggnet.localization.boxes import (
    area,
    boxes_through_transform,
    choose_target,
    decode,
    dense_windows,
    encode,
    iou,
    rescale_factors,
    training_target,
    window_to_image,
)
from vggnet.localization.metrics import gt_class_box_error, localisation_correct, localisation_error

# -- IoU ---------------------------------------------------------------------------------------


def test_iou_hand_computed():
    a = np.array([[0, 0, 2, 2], [0, 0, 2, 1]], float)
    b = np.array([[1, 1, 3, 3], [0, 0, 1, 1], [5, 5, 6, 6], [0, 0, 2, 2]], float)
    got = iou(a, b)
    assert got.shape == (2, 4)
    # [0,2)^2 vs [1,3)^2: intersection 1, union 4 + 4 - 1 = 7.
    np.testing.assert_allclose(got[0], [1 / 7, 1 / 4, 0, 1])
    # 2x1 vs its left half: 1 / 2 exactly.
    np.testing.assert_allclose(got[1], [0, 0.5, 0, 0.5])


def test_iou_degenerate_boxes_give_zero_not_nan():
    pts = np.array([[3, 3, 3, 3], [1, 1, 1, 5]], float)  # a point and a vertical line
    got = iou(pts, np.vstack([pts, [[0, 0, 10, 10]]]))
    assert np.isfinite(got).all() and (got == 0).all()
    assert iou(np.zeros((0, 4)), pts).shape == (0, 2)
    # torch input is accepted, output is numpy float64
    out = iou(torch.tensor([[0.0, 0, 4, 4]]), [[0, 0, 4, 2]])
    assert out.dtype == np.float64 and out[0, 0] == 0.5


# -- parameterisation --------------------------------------------------------------------------


def test_encode_is_relative_to_the_window_in_crop_units_and_decode_inverts_it():
    boxes = np.array([[10, 20, 42, 36], [-5.5, 0.25, 100, 7]])
    p = encode(boxes, (8, 4), 32)
    np.testing.assert_allclose(p[0], [(26 - 8) / 32, (28 - 4) / 32, 1.0, 0.5])
    np.testing.assert_allclose(decode(p, (8, 4), 32), boxes, atol=1e-12)
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 500, (50, 2))
    many = np.hstack([corners, corners + rng.uniform(1, 300, (50, 2))])
    windows = rng.integers(0, 300, (50, 2))  # one window per box
    np.testing.assert_allclose(decode(encode(many, windows, 224), windows, 224), many, atol=1e-9)


def test_choose_target_is_the_largest_visible_box():
    assert choose_target(np.array([[0, 0, 2, 2], [0, 0, 4, 3], [1, 1, 4, 4]], float)) == 1
    assert choose_target(np.array([[0, 0, 3, 3], [5, 5, 8, 8]], float)) == 0  # tie: the first
    assert choose_target(np.zeros((0, 4))) is None


def _red_box(arr):
    """The pixel extent (xmin, ymin, xmax, ymax) of the red rectangle in a crop, or None."""
    a = arr.astype(int)
    mask = (a[..., 0] - a[..., 1] > 77) & (a[..., 0] - a[..., 2] > 77)  # more than half red
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


BOTH_WAYS = {"whole", "clipped", "flipped", "upright"}


@pytest.mark.parametrize(
    "s,crop,rect,cases",
    [
        (
            64,
            56,
            (8, 6, 40, 30),
            BOTH_WAYS | {"invisible"},
        ),  # shrunk; near a corner, so sometimes out of view
        (150, 96, (30, 20, 70, 60), BOTH_WAYS),  # enlarged
    ],
)
def test_boxes_follow_the_pixels_through_rescale_crop_and_flip(s, crop, rect, cases):
    W, H = 120, 90
    img = Image.new("RGB", (W, H), (100, 100, 100))
    ImageDraw.Draw(img).rectangle([rect[0], rect[1], rect[2] - 1, rect[3] - 1], fill=(255, 0, 0))
    t = TrainTransform(s, crop, flip=True)
    seen = set()
    for seed in range(80):
        arr, drawn = t.apply(img, s, np.random.default_rng(seed))
        got, kept = boxes_through_transform(np.array([rect], float), (W, H), drawn, crop)
        actual = _red_box(arr)
        if len(kept) == 0:
            seen.add("invisible")
            assert actual is None or area(np.array([actual], float))[0] <= 2, (seed, drawn)
            continue
        assert actual is not None, (seed, drawn)
        np.testing.assert_allclose(got[0], actual, atol=1.0, err_msg=f"seed {seed}: {drawn}")
        sx, sy = rescale_factors((W, H), drawn["size"])
        whole = np.array(rect, float) * [sx, sy, sx, sy] - [drawn["x"], drawn["y"]] * 2
        inside = whole.min() >= 0 and whole.max() <= crop
        seen.add("whole" if inside else "clipped")
        seen.add("flipped" if drawn["flipped"] else "upright")
        if inside and not drawn["flipped"]:
            # window_to_image inverts the forward mapping at the crop's window (test protocol).
            back = window_to_image(encode(got, (0, 0), crop), (drawn["x"], drawn["y"]), crop, (sx, sy))
            np.testing.assert_allclose(back[0], rect, atol=1e-9)
    assert seen == cases, seen


def test_training_target_picks_the_largest_visible_box_and_its_class():
    drawn = dict(S=100, x=10, y=0, size=(100, 100), flipped=False)
    boxes = np.array([[0, 0, 30, 30], [20, 20, 40, 40], [200, 200, 210, 210]], float)  # source 200x200
    params, cls = training_target(boxes, np.array([3, 1, 2]), (200, 200), drawn, 50)
    # scaled by 1/2: [0,0,15,15] -> crop [0,0,5,15] (area 75); [10,10,20,20] -> [0,10,10,20] (100)
    assert cls == 1
    np.testing.assert_allclose(decode(params[None], (0, 0), 50), [[0, 10, 10, 20]])
    assert training_target(boxes[2:], [2], (200, 200), drawn, 50) is None
    # the target is the object's whole box, beyond the crop where the object is
    params, cls = training_target(boxes[:1], [3], (200, 200), drawn, 50)
    np.testing.assert_allclose(decode(params[None], (0, 0), 50), [[-10, 0, 5, 15]])


def test_window_to_image_undoes_a_flip_of_the_whole_rescaled_image():
    src, box = (300, 200), np.array([[30, 40, 120, 150]], float)
    rescaled = (450, 300)
    sx, sy = rescale_factors(src, rescaled)
    scaled = box * [sx, sy, sx, sy]
    mirrored = scaled.copy()
    mirrored[:, [0, 2]] = rescaled[0] - scaled[:, [2, 0]]
    window = (224, 32)
    p = encode(mirrored, window, 224)
    np.testing.assert_allclose(
        window_to_image(p, window, 224, (sx, sy), flip_width=rescaled[0]), box, atol=1e-9
    )
    clipped = window_to_image(encode([[-10, -10, 500, 400]], (0, 0), 224), (0, 0), 224, (1, 1), clip_to=src)
    np.testing.assert_allclose(clipped, [[0, 0, 300, 200]])


def test_dense_windows_row_major_at_stride_32():
    w = dense_windows(2, 3)
    np.testing.assert_array_equal(w, [[0, 0], [32, 0], [64, 0], [0, 32], [32, 32], [64, 32]])
    # matches flattening a (4, H, W) map location by location
    boxmap = torch.arange(4 * 2 * 3, dtype=torch.float64).reshape(4, 2, 3)
    flat = boxmap.permute(1, 2, 0).reshape(-1, 4)
    assert torch.equal(flat[1 * 3 + 2], boxmap[:, 1, 2])
    assert tuple(w[1 * 3 + 2]) == (64, 32)
    assert dense_windows(1, 1, stride=16).shape == (1, 2)


# -- ILSVRC localisation error (Appendix A) ------------------------------------------------------

GT = np.array([[0, 0, 10, 10], [20, 0, 40, 10]], float)


def test_iou_exactly_half_counts_as_correct():
    half = [0, 0, 10, 5]  # inside the first GT box, half its area: IoU 0.5 exactly
    assert iou([half], GT[:1])[0, 0] == 0.5
    assert localisation_correct([(3, half)], 3, GT, k=1)
    assert not localisation_correct([(3, [0, 0, 10, 4.9])], 3, GT, k=1)  # IoU 0.49


def test_best_of_several_gt_boxes_counts_and_only_the_gt_class():
    guess = [21, 0, 40, 10]  # misses the first GT box entirely, IoU 0.95 with the second
    assert localisation_correct([(3, guess)], 3, GT, k=1)
    # a perfect box with the wrong class is an error
    assert not localisation_correct([(4, GT[0])], 3, GT, k=5)
    # a box that matches a GT box of another class does not count
    assert not localisation_correct([(3, GT[1])], 3, GT, gt_box_classes=[3, 4], k=5)
    assert localisation_correct([(3, GT[0])], 3, GT, gt_box_classes=[3, 4], k=5)


def test_top1_versus_top5():
    guesses = [(1, GT[0]), (2, GT[0]), (3, [50, 50, 60, 60]), (4, GT[0]), (3, GT[0])]
    assert not localisation_correct(guesses, 3, GT, k=1)
    assert not localisation_correct(guesses, 3, GT, k=4)  # the right class, but a bad box
    assert localisation_correct(guesses, 3, GT, k=5)
    results = [
        (guesses, 3, GT, None),  # right only at rank 5
        ([(3, GT[1])], 3, GT, None),  # right at rank 1
        ([(0, GT[0])], 3, GT, None),  # never right
        ([], 3, GT, None),  # no guess at all
    ]
    assert localisation_error(results) == {"top1_loc_err": 75.0, "top5_loc_err": 50.0}


def test_protocol_1_gt_class_box_error():
    preds = np.array([[0, 0, 10, 5], [0, 0, 10, 4], [20, 0, 40, 10]], float)
    gts = [GT[:1], GT[:1], GT]
    assert gt_class_box_error(preds, gts) == pytest.approx(100 / 3)
    with pytest.raises(ValueError):
        gt_class_box_error(preds[:2], gts)
