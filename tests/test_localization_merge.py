"""OverFeat-style greedy merging (Appendix A) and ranking guesses."""

import numpy as np
import pytest

from vggnet.errors import VGGError
from vggnet.localization.merge import greedy_merge, match_score, merge_per_class, rank_guesses


def cluster(centre, n, spread, size, seed):
    rng = np.random.default_rng(seed)
    c = np.asarray(centre, float) + rng.uniform(-spread, spread, (n, 2))
    wh = size + rng.uniform(-spread, spread, (n, 2))
    return np.hstack([c - wh / 2, c + wh / 2])


def test_match_score_hand_computed():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 0, 120, 20]], float)
    got = match_score(a, b)[0]
    # identical: 0 / 10 - 1; shifted by 5: 5 / 10 - 50/150; far: sqrt(105^2 + 5^2) / ((10 + 20) / 2) - 0
    np.testing.assert_allclose(got, [-1.0, 0.5 - 1 / 3, np.hypot(105, 5) / 15])


def test_one_tight_cluster_becomes_the_mean_of_its_raw_boxes():
    boxes = cluster((50, 50), 7, 2.0, 40, seed=0)
    scores = np.arange(1, 8, dtype=float)
    m = greedy_merge(boxes, scores, t=0.5)
    assert len(m) == 1 and m.counts[0] == 7
    np.testing.assert_allclose(m.boxes[0], boxes.mean(axis=0), atol=1e-12)
    assert m.scores[0] == pytest.approx(28.0)


def test_merged_box_is_the_mean_of_raw_boxes_not_of_two_means():
    # Three boxes where the pairwise-average rule gives a different answer: merging
    # (a, b) first then c gives ((a + b) / 2 + c) / 2 under that rule, but (a + b + c) / 3 here.
    boxes = np.array([[0, 0, 10, 10], [0.5, 0, 10.5, 10], [3, 0, 13, 10]], float)
    m = greedy_merge(boxes, [1, 1, 1], t=0.5)
    assert len(m) == 1
    np.testing.assert_allclose(m.boxes[0], boxes.mean(axis=0))
    assert not np.allclose(m.boxes[0], ((boxes[0] + boxes[1]) / 2 + boxes[2]) / 2)


def test_two_separated_clusters_stay_two_and_scores_add_up():
    a = cluster((40, 40), 6, 2.0, 30, seed=1)
    b = cluster((300, 200), 9, 2.0, 30, seed=2)
    boxes = np.vstack([a, b])
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.1, 1.0, len(boxes))
    m = greedy_merge(boxes, scores, t=0.5)
    assert len(m) == 2
    assert m.counts.sum() == 15 and m.scores.sum() == pytest.approx(scores.sum())
    by_count = {int(c): (box, s) for box, s, c in zip(m.boxes, m.scores, m.counts)}
    np.testing.assert_allclose(by_count[6][0], a.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(by_count[9][0], b.mean(axis=0), atol=1e-12)
    assert by_count[6][1] == pytest.approx(scores[:6].sum())
    assert list(m.scores) == sorted(m.scores, reverse=True)  # best first


def test_threshold_low_merges_nothing_huge_merges_everything():
    boxes = np.vstack([cluster((40, 40), 4, 3.0, 30, 4), cluster((400, 300), 5, 3.0, 60, 5)])
    scores = np.linspace(1, 2, len(boxes))
    none = greedy_merge(boxes, scores, t=-1.0)  # a match score is never below -1
    assert len(none) == len(boxes) and (none.counts == 1).all()
    np.testing.assert_allclose(none.scores, np.sort(scores)[::-1])
    everything = greedy_merge(boxes, scores, t=1e9)
    assert len(everything) == 1 and everything.counts[0] == len(boxes)
    np.testing.assert_allclose(everything.boxes[0], boxes.mean(axis=0), atol=1e-12)
    assert everything.scores[0] == pytest.approx(scores.sum())


def test_merge_stops_when_the_best_match_reaches_t():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], float)  # match 0.5 - 1/3
    s = 0.5 - 1 / 3
    assert len(greedy_merge(boxes, [1, 1], t=s)) == 2  # "below t": equal does not merge
    assert len(greedy_merge(boxes, [1, 1], t=s + 1e-9)) == 1


def test_many_boxes_merge_fast_and_absurd_counts_are_refused():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 400, (1500, 2))
    boxes = np.hstack([c, c + rng.uniform(20, 200, (1500, 2))])
    m = greedy_merge(boxes, rng.random(1500), t=0.3)
    assert 1 < len(m) < 1500 and m.counts.sum() == 1500
    with pytest.raises(VGGError, match="at most 100 boxes"):
        greedy_merge(boxes[:101], np.ones(101), 0.3, max_boxes=100)
    with pytest.raises(VGGError, match="finite"):
        greedy_merge([[0, 0, np.nan, 1]], [1.0], 0.3)
    empty = greedy_merge(np.zeros((0, 4)), [], 0.3)
    assert len(empty) == 0


def test_rank_guesses_by_classification_scores_one_box_per_class():
    per_class = {
        2: (np.array([[0, 0, 10, 10], [0, 0, 11, 10], [50, 50, 60, 60]], float), np.array([0.2, 0.2, 0.9])),
        0: (np.array([[5, 5, 20, 20]], float), np.array([0.5])),
        1: (np.array([[1, 1, 2, 2]], float), np.array([0.1])),
    }
    merged = merge_per_class(per_class, t=0.5)
    assert set(merged) == {0, 1, 2} and len(merged[2]) == 2
    # class 2's best merged box is the lone high-scoring one (0.9 > 0.2 + 0.2)
    class_scores = np.array([0.3, 0.1, 0.6, 0.05])
    guesses = rank_guesses(merged, class_scores, k=5)
    assert [c for c, _ in guesses] == [2, 0, 1]  # class 3 has no boxes: left out
    np.testing.assert_allclose(guesses[0][1], [50, 50, 60, 60])
    assert [c for c, _ in rank_guesses(merged, class_scores, k=1)] == [2]


def naive_merge(boxes, scores, t):
    """The rule written out plainly: all pairs of current clusters each step (O(N^3))."""
    clusters = [[i] for i in range(len(boxes))]
    while len(clusters) > 1:
        means = np.array([boxes[c].mean(axis=0) for c in clusters])
        m = match_score(means, means)
        np.fill_diagonal(m, np.inf)
        i, j = np.unravel_index(np.argmin(m), m.shape)
        if not m[i, j] < t:
            break
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    return sorted((round(float(scores[c].sum()), 9), len(c)) for c in clusters)


@pytest.mark.parametrize("t", [0.0, 0.2, 0.4, 1.5])
def test_incremental_bookkeeping_matches_the_plain_rule(t):
    rng = np.random.default_rng(7)
    c = rng.uniform(0, 200, (40, 2))
    boxes = np.hstack([c, c + rng.uniform(10, 80, (40, 2))])
    scores = rng.uniform(0, 1, 40)
    m = greedy_merge(boxes, scores, t)
    assert sorted((round(float(s), 9), int(n)) for s, n in zip(m.scores, m.counts)) == naive_merge(
        boxes, scores, t
    )
