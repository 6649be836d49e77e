"""Continual learning's summary numbers (chapter 13), read from the accuracy matrix R: R[i, j] is the accuracy on
task j after training on tasks 0..i in turn (Lopez-Paz and Ranzato 2017).

Sign convention (libraries differ): backward transfer is positive when learning later tasks improved earlier ones and
negative when it made the model forget; forgetting, where a library reports it, is usually its negative.
"""
from __future__ import annotations

import numpy as np


def accuracy_matrix(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] or R.shape[0] < 2:
        raise ValueError(f"R is a square matrix of at least 2 tasks (row: after training task i, column: scored on "
                         f"task j), got shape {R.shape}.")
    return R


def average_accuracy(R) -> float:
    """The mean accuracy over all tasks after the last one was learned: the mean of R's last row."""
    return float(accuracy_matrix(R)[-1].mean())


def backward_transfer(R) -> float:
    """Mean over the tasks before the last of R[T-1, j] - R[j, j]: how the later tasks changed each earlier one
    (negative: forgetting)."""
    R = accuracy_matrix(R)
    return float(np.mean([R[-1, j] - R[j, j] for j in range(len(R) - 1)]))


def forward_transfer(R, baseline) -> float:
    """Mean over the tasks after the first of R[j-1, j] - baseline[j]: how much the tasks learned before j help on j
    before j is trained on, against `baseline[j]`, task j's accuracy from the starting model (state which: in Lopez-Paz
    and Ranzato, a randomly initialised one; with one head per task, e.g. a probe on the pretrained body)."""
    R = accuracy_matrix(R)
    baseline = np.asarray(baseline, dtype=float)
    if baseline.shape != (len(R),):
        raise ValueError(f"baseline holds one accuracy per task ({len(R)}), got shape {baseline.shape}.")
    return float(np.mean([R[j - 1, j] - baseline[j] for j in range(1, len(R))]))
