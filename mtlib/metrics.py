"""Accuracy, macro-F1 and the confusion matrix (chapter 02); the proxy A-distance between two domains and bootstrap
confidence intervals of paired differences (chapters 01, 03)."""
from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix as _confusion, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_score


def _arrays(preds, labels):
    preds, labels = np.asarray(preds).ravel(), np.asarray(labels).ravel()
    if preds.shape != labels.shape:
        raise ValueError(f"preds and labels differ in length: {preds.shape[0]} vs {labels.shape[0]}.")
    if preds.size == 0:
        raise ValueError("No predictions to score: the evaluation split is empty.")
    return preds, labels


def accuracy(preds, labels) -> float:
    """The fraction of predictions equal to the label."""
    preds, labels = _arrays(preds, labels)
    return float((preds == labels).mean())


def macro_f1(preds, labels, num_classes: int | None = None) -> float:
    """The unweighted mean of the per-class F1 scores: every class counts the same, however rare."""
    preds, labels = _arrays(preds, labels)
    classes = range(num_classes) if num_classes else None
    return float(f1_score(labels, preds, average="macro", labels=classes, zero_division=0))


def confusion_matrix(preds, labels, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    preds, labels = _arrays(preds, labels)
    return _confusion(labels, preds, labels=list(range(num_classes)))


def majority_baseline(train_labels, eval_labels) -> float:
    """The accuracy of always predicting the most frequent training class."""
    train_labels = np.asarray(train_labels).ravel()
    if train_labels.size == 0:
        raise ValueError("No training labels: an empty split has no majority class.")
    majority = np.bincount(train_labels).argmax()
    return accuracy(np.full(len(eval_labels), majority), eval_labels)


def proxy_a_distance(a, b, seed=0):
    """2 (1 - 2 err), err: the cross-validated error of a linear classifier that tells texts of a from texts of b."""
    features = CountVectorizer(binary=True).fit_transform(a + b)
    domain = np.r_[np.zeros(len(a)), np.ones(len(b))]
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    acc = cross_val_score(LogisticRegression(solver="liblinear"), features, domain, cv=folds).mean()
    return 2 * (1 - 2 * (1 - acc))


def bootstrap_ci(values, n_resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap confidence interval of the mean of `values` (chapter 03).

    For a paired comparison of two classifiers on one test set, pass the per-item differences (e.g. correct by A
    minus correct by B, averaged over seeds): resampling the items gives the uncertainty that comes from the
    choice of test set, which a spread over seeds on a fixed test set leaves out.
    """
    values = np.asarray(values, dtype=float).ravel()
    if values.size < 2:
        raise ValueError(f"A bootstrap needs at least 2 values, got {values.size}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (e.g. 0.95), got {level}.")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(1)
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, (1 + level) / 2))
