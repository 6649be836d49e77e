"""The book's learning-rate rule (chapter 06 states it; every chapter and the results store use it).

A method's rate is chosen on the first seed: train at each rate of a grid of at least three, half a decade apart,
and keep the one with the lowest validation loss. When that rate is the smallest or the largest tried, the best rate
may lie beyond the grid: try the next rate beyond that edge, and choose again. Then run the other seeds at the chosen
rate. The validation loss, not the accuracy: on a few hundred sentences the accuracy moves in coarse steps and ties,
while the loss also sees how confident the wrong answers are.
"""
from __future__ import annotations

import numpy as np


def next_rate(rate: float, up: bool) -> float:
    """The next rate on the book's half-decade grid (1, 3, 10, 30, ... times a power of ten), up or down."""
    exponent = int(np.floor(np.log10(rate) + 1e-9))
    mantissa = round(rate / 10 ** exponent)
    if mantissa not in (1, 3):
        raise ValueError(f"{rate} is not on the half-decade grid (1 or 3 times a power of ten).")
    if up:
        return float(f"{3 * 10 ** exponent:.0e}") if mantissa == 1 else float(f"{10 ** (exponent + 1):.0e}")
    return float(f"{10 ** exponent:.0e}") if mantissa == 3 else float(f"{3 * 10 ** (exponent - 1):.0e}")


def rate_rule(losses: dict[float, float]) -> tuple[float, float | None]:
    """The book's rate rule: the rate with the lowest validation loss. When it sits at an edge of the rates tried,
    also the next rate beyond that edge, to try before the choice stands (None when the choice is interior)."""
    finite = {lr: loss if np.isfinite(loss) else np.inf for lr, loss in losses.items()}  # a diverged run never wins
    best = min(finite, key=finite.get)
    if len(losses) > 1 and best == min(losses):
        return best, next_rate(best, up=False)
    if len(losses) > 1 and best == max(losses):
        return best, next_rate(best, up=True)
    return best, None


def pick_rate(run_at, rates, extensions: int = 2):
    """The rule with its runs: `run_at(lr)` trains the first seed and returns a `task.Run`. Returns the chosen run and
    every run tried, by rate; the grid grows past an edge at most `extensions` times."""
    grid = {lr: run_at(lr) for lr in rates}
    best, beyond = rate_rule({lr: run.history.last["val_loss"] for lr, run in grid.items()})
    for _ in range(extensions):
        if beyond is None:
            break
        grid[beyond] = run_at(beyond)
        best, beyond = rate_rule({lr: run.history.last["val_loss"] for lr, run in grid.items()})
    return grid[best], [grid[lr] for lr in sorted(grid)]
