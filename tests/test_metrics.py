"""mtlib.metrics: accuracy, macro-F1, confusion matrix and majority baseline against hand-computed values."""
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from mtlib import metrics


def test_accuracy():
    assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    assert metrics.accuracy([2, 2, 2], [0, 1, 2]) == pytest.approx(1 / 3)
    assert metrics.accuracy(np.array([[1, 0]]), [1, 0]) == 1.0  # shapes are flattened
    assert metrics.accuracy(torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 0, 0])) == 0.6
    assert isinstance(metrics.accuracy([1], [1]), float)


def test_macro_f1_by_hand():
    preds, labels = [0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2]
    # class 0: tp 1, fp 1, fn 0 -> P 1/2, R 1 -> F1 2/3
    # class 1: tp 2, fp 1, fn 1 -> P 2/3, R 2/3 -> F1 2/3
    # class 2: tp 1, fp 0, fn 1 -> P 1, R 1/2 -> F1 2/3
    assert metrics.macro_f1(preds, labels) == pytest.approx(2 / 3)
    # every class counts the same however rare: a majority-class predictor scores 0.5 * F1(majority)
    assert metrics.macro_f1([0] * 10, [0] * 9 + [1]) == pytest.approx(0.5 * (2 * 0.9 / 1.9))


def test_macro_f1_counts_a_class_never_seen_as_zero():
    assert metrics.macro_f1([0, 1], [0, 1]) == 1.0
    assert metrics.macro_f1([0, 1], [0, 1], num_classes=4) == 0.5  # classes 2 and 3: F1 0 (zero division)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 50)
    preds = np.where(rng.random(50) < 0.6, labels, rng.integers(0, 4, 50))
    assert metrics.macro_f1(preds, labels) == pytest.approx(f1_score(labels, preds, average="macro"))
    assert metrics.macro_f1(preds, labels, 5) == pytest.approx(
        f1_score(labels, preds, average="macro", labels=range(5), zero_division=0))


def test_confusion_matrix():
    cm = metrics.confusion_matrix(preds=[0, 1, 1, 2, 0], labels=[0, 0, 1, 2, 2], num_classes=4)
    expected = np.array([[1, 1, 0, 0],   # true 0: predicted 0 once, 1 once
                         [0, 1, 0, 0],
                         [1, 0, 1, 0],   # true 2: predicted 0 once, 2 once
                         [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 5 and np.trace(cm) / cm.sum() == metrics.accuracy([0, 1, 1, 2, 0], [0, 0, 1, 2, 2])


def test_majority_baseline():
    assert metrics.majority_baseline([0, 1, 1, 2], [1, 1, 0, 2, 1]) == 0.6
    assert metrics.majority_baseline(np.array([3, 3, 0]), [0, 0, 0]) == 0.0


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.macro_f1,
                                lambda p, l: metrics.confusion_matrix(p, l, 2)])
def test_mismatched_lengths_raise(fn):
    with pytest.raises(ValueError, match="differ in length: 3 vs 2"):
        fn([0, 1, 1], [0, 1])


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.macro_f1,
                                lambda p, l: metrics.confusion_matrix(p, l, 2), metrics.majority_baseline])
def test_empty_inputs_raise(fn):
    with pytest.raises(ValueError):
        fn([], [])


def test_empty_messages():
    with pytest.raises(ValueError, match="No predictions to score"):
        metrics.accuracy(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="No training labels"):
        metrics.majority_baseline([], [0, 1])
    with pytest.raises(ValueError, match="No predictions to score"):
        metrics.majority_baseline([0, 1, 1], [])


# ------------------------------------------------------------------------------------------- proxy A-distance
def test_proxy_a_distance_separable_and_alike():
    rng = np.random.default_rng(0)
    words_a, words_b = ["film", "actor", "plot", "scene"], ["food", "waiter", "menu", "salad"]
    shared = ["good", "bad", "very", "not", "great", "awful"]
    make = lambda own, n: [" ".join(rng.choice(own + shared, 6)) for _ in range(n)]
    movies, food = make(words_a, 60), make(words_b, 60)
    assert metrics.proxy_a_distance(movies, food) > 1.8  # separable domains: close to 2
    same = make(words_a, 120)
    assert abs(metrics.proxy_a_distance(same[:60], same[60:])) < 0.6  # one domain split in two: close to 0


# ------------------------------------------------------------------------------------------- bootstrap CI
def test_bootstrap_ci_covers_the_mean_and_shrinks_with_more_items():
    rng = np.random.default_rng(1)
    small, large = rng.normal(0.02, 0.3, 100), rng.normal(0.02, 0.3, 10_000)
    lo, hi = metrics.bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = metrics.bootstrap_ci(large)
    assert (hi2 - lo2) < 0.2 * (hi - lo)  # 100x the items: about a tenth of the width
    assert lo2 > 0  # with enough items a 2-point difference is clear of zero
    assert metrics.bootstrap_ci(small, seed=3) == metrics.bootstrap_ci(small, seed=3)


@pytest.mark.parametrize("values, level, match", [([1.0], 0.95, "at least 2 values"),
                                                   ([0.0, 1.0], 95, "level must be between 0 and 1")])
def test_bootstrap_ci_bad_input(values, level, match):
    with pytest.raises(ValueError, match=match):
        metrics.bootstrap_ci(values, level=level)
