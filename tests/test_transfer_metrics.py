import math

import numpy as np
import pytest

from vggnet.errors import VGGError
from vggnet.transfer.metrics import RECALL_POINTS, auc_ap, confusion_matrix, mean_class_recall, voc07_ap


def test_ap_on_a_hand_worked_ranking_with_a_difficult_image():
    # Scores in decreasing order; the 0.6 image is "difficult" (0) and must be ignored.
    # Ranking without it: + - + - +, 3 positives.
    #   rank 1: P=1    R=1/3 | rank 2: P=1/2 R=1/3 | rank 3: P=2/3 R=2/3 | rank 4: P=1/2 R=2/3
    #   rank 5: P=3/5  R=1
    # 11-point: t in {0, .1, .2, .3} -> max P at R >= t = 1 (4 points); t in {.4, .5, .6} -> 2/3
    #   (3 points); t in {.7, .8, .9, 1} -> 3/5 (4 points). AP = (4 + 2 + 2.4) / 11 = 8.4 / 11.
    # Area: monotone P is 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1]:
    #   AP = (1 + 2/3 + 3/5) / 3 = 34/45.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, -1, 1, 0, -1, 1])
    assert voc07_ap(scores, labels)["mean"] == pytest.approx(8.4 / 11)
    assert auc_ap(scores, labels)["mean"] == pytest.approx(34 / 45)
    # Counted as a negative instead, the last positive would sit at rank 6 (P = 1/2): 8/11.
    as_negative = labels.copy()
    as_negative[3] = -1
    assert voc07_ap(scores, as_negative)["mean"] == pytest.approx(8 / 11)


def test_ties_keep_the_original_order():
    # Two images tie at 0.5. Stable ranking: 0.9(+), then the tied ones in input order.
    # Input order (-, +): ranking + - + -, P = 1, 1/2, 2/3, 1/2 and R = 1/2, 1/2, 1, 1.
    #   11-point: t <= .5 -> 1 (6 points), t >= .6 -> 2/3 (5 points): (6 + 10/3) / 11 = 28/33.
    #   Area: 1/2 * 1 + 1/2 * 2/3 = 5/6.
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    labels = np.array([-1, 1, 1, -1])
    assert voc07_ap(scores, labels)["mean"] == pytest.approx(28 / 33)
    assert auc_ap(scores, labels)["mean"] == pytest.approx(5 / 6)
    # The same tie in the other input order (+, -) ranks both positives first: AP = 1.
    assert voc07_ap(scores, np.array([1, 1, -1, -1]))["mean"] == pytest.approx(1.0)
    assert auc_ap(scores, np.array([1, 1, -1, -1]))["mean"] == pytest.approx(1.0)


def test_recall_exactly_on_a_threshold_is_below_the_devkits_t():
    # 10 positives: 3 ranked first, then 10 negatives, then the other 7. At rank 3, R = 3/10 = 0.3 with
    # P = 1, below the devkit's t = 0.30000000000000004 (MATLAB's 0:0.1:1), so it does not count there.
    #   t in {0, .1, .2}: 1 (3 points). t >= .3: only ranks 14..20 reach R >= t; their P rises
    #   from 4/14 to 10/20, so the max is 1/2 (8 points). AP = (3 + 8 * 0.5) / 11 = 7 / 11
    #   (and 7.5 / 11 had t = 0.3 been k/10).
    labels = np.array([1] * 3 + [-1] * 10 + [1] * 7)
    scores = -np.arange(20.0)
    assert voc07_ap(scores, labels)["mean"] == pytest.approx(7 / 11)
    # and a recall of exactly 0.7 = 7/10 does count at the devkit's t = 1 - 3 * 0.1 (0.7 itself):
    # 7 positives first (P = 1 up to R = 0.7), then 10 negatives, then 3: t <= .7 -> 1 (8 points),
    # t >= .8 -> the last rank's 10/20 (3 points).
    labels = np.array([1] * 7 + [-1] * 10 + [1] * 3)
    assert voc07_ap(scores, labels)["mean"] == pytest.approx((8 + 3 * 0.5) / 11)


def test_per_class_and_a_class_without_positives_is_reported():
    scores = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.5, 0.4, 0.2]])
    labels = np.array([[1, -1, -1], [-1, 1, 0], [-1, -1, -1]])
    for f in (voc07_ap, auc_ap):
        r = f(scores, labels)
        assert r["per_class"][0] == pytest.approx(1.0) and r["per_class"][1] == pytest.approx(1.0)
        assert math.isnan(r["per_class"][2])
        assert r["no_positives"] == [2] and r["classes_scored"] == 2
        assert r["mean"] == pytest.approx(1.0)  # over the two classes that have positives
    assert voc07_ap(scores, labels)["kind"] == "VOC07 11-point"
    assert auc_ap(scores, labels)["kind"] == "area under curve"


def test_bad_labels_are_refused():
    with pytest.raises(VGGError, match="1, -1 or 0"):
        voc07_ap(np.array([0.1, 0.2]), np.array([1, 2]))
    with pytest.raises(VGGError, match="shape"):
        auc_ap(np.zeros((3, 2)), np.ones((3, 3)))


def test_mean_class_recall_differs_from_accuracy_on_unequal_classes():
    # Class 0: 8 test images, all right; class 1: 2 images, both predicted as class 0;
    # class 2: 2 images, one right. Accuracy = 9/12 = 0.75; mean class recall = (1 + 0 + 1/2)/3 = 0.5.
    y_true = np.array([0] * 8 + [1] * 2 + [2] * 2)
    y_pred = np.array([0] * 8 + [0, 0] + [2, 1])
    r = mean_class_recall(y_true, y_pred, 3)
    assert r["mean"] == pytest.approx(0.5)
    assert np.mean(y_true == y_pred) == pytest.approx(0.75)
    assert r["per_class"] == pytest.approx([1.0, 0.0, 0.5]) and r["counts"] == [8, 2, 2]


def test_mean_class_recall_leaves_out_a_class_without_test_images():
    r = mean_class_recall([0, 0, 2], [0, 1, 2], 3)
    assert r["absent"] == [1] and math.isnan(r["per_class"][1])
    assert r["mean"] == pytest.approx((0.5 + 1.0) / 2)


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(VGGError, match="class indices"):
        confusion_matrix([0, 3], [0, 0], 3)


def test_voc07_thresholds_are_the_devkits_floating_point_colon():
    # MATLAB builds 0:0.1:1 from both ends: 3 * 0.1 is above 0.3, 1 - 3 * 0.1 is 0.7 itself.
    assert RECALL_POINTS[3] == 3 * 0.1 and RECALL_POINTS[3] > 0.3
    assert RECALL_POINTS[7] == 1 - 3 * 0.1 == 0.7 and RECALL_POINTS[0] == 0.0 and RECALL_POINTS[-1] == 1.0
    assert [k for k in range(11) if RECALL_POINTS[k] != k / 10] == [3]
