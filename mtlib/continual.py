"""Continual learning (chapter 13): the summary numbers read from the accuracy matrix R, where R[i, j] is the accuracy
on task j after training on tasks 0..i in turn (Lopez-Paz and Ranzato 2017), and the replay buffer.

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


class ReplayBuffer:
    """A fixed-size memory of past examples (chapter 13's replay), filled by reservoir sampling (Vitter's algorithm R):
    after n examples have been offered, each of them is in the buffer with the same probability capacity / n, so the
    memory is a uniform sample of everything seen, whatever the order of the tasks."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"A replay buffer holds at least one example, got capacity={capacity}. For no replay, "
                             "train without a buffer.")
        self.capacity, self.seen, self.items = capacity, 0, []
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, example) -> None:
        """Offer one example: kept while there is room, then in place of a random one with probability
        capacity / (examples offered so far)."""
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(example)
            return
        slot = int(self.rng.integers(0, self.seen))
        if slot < self.capacity:
            self.items[slot] = example

    def sample(self, batch_size: int) -> list:
        """`batch_size` stored examples drawn without replacement (all of them when fewer are stored)."""
        if not self.items:
            raise ValueError("The replay buffer is empty: add the examples of a task before sampling from it.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        chosen = self.rng.choice(len(self.items), size=min(batch_size, len(self.items)), replace=False)
        return [self.items[i] for i in chosen]
