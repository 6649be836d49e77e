"""The book's figures: loss curves, confusion matrices, attention heatmaps, sweeps (chapters 01, 02, 04)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def loss_curves(histories: dict, smooth: int = 10, ax=None):
    """Training loss per step (smoothed with a running mean of `smooth` steps) for one or more `History` objects.

    histories: `{"label": history}`.
    """
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, history in histories.items():
        steps = np.asarray(history.steps, dtype=float)
        k = max(1, min(smooth, len(steps)))
        ax.plot(np.arange(k, len(steps) + 1), np.convolve(steps, np.ones(k) / k, mode="valid"), label=name)
    ax.set(xlabel="optimiser step", ylabel="training loss", title="Training loss")
    ax.legend()
    return ax


def confusion_matrix(cm, names, ax=None, title: str = "Confusion matrix"):
    """A confusion matrix with counts in the cells; rows are true classes, columns predictions."""
    cm = np.asarray(cm)
    if cm.shape != (len(names), len(names)):
        raise ValueError(f"A {cm.shape} matrix needs {cm.shape[0]} class names, got {len(names)}.")
    ax = ax or plt.subplots(figsize=(1.1 * len(names) + 2, 1.0 * len(names) + 1.5))[1]
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set(xticks=range(len(names)), yticks=range(len(names)), xticklabels=names, yticklabels=names,
           xlabel="predicted", ylabel="true", title=title)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return ax


def heatmap(matrix, row_labels, col_labels, ax=None, title: str = "", fmt: str = "{:.2f}", cmap: str = "viridis",
            spread=None):
    """A labelled heatmap with the values written in the cells (e.g. a train-domain x test-domain accuracy matrix).

    spread: a matrix of the same shape (e.g. the standard deviation over seeds), written under each value as `± s`.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"A matrix of shape {matrix.shape} does not match {len(row_labels)} row labels and "
                         f"{len(col_labels)} column labels.")
    if spread is not None and np.shape(spread) != matrix.shape:
        raise ValueError(f"spread has shape {np.shape(spread)}, but the matrix has shape {matrix.shape}.")
    ax = ax or plt.subplots(figsize=(1.2 * len(col_labels) + 2, 1.0 * len(row_labels) + 1.5))[1]
    ax.imshow(matrix, cmap=cmap)
    for (i, j), v in np.ndenumerate(matrix):
        text = fmt.format(v) if spread is None else f"{fmt.format(v)}\n± {fmt.format(np.asarray(spread)[i, j])}"
        ax.text(j, i, text, ha="center", va="center",
                color="black" if v > matrix.min() + (matrix.max() - matrix.min()) / 2 else "white")
    ax.set(xticks=range(len(col_labels)), yticks=range(len(row_labels)), xticklabels=col_labels,
           yticklabels=row_labels, title=title)
    return ax


def attention_heatmap(attention, tokens, ax=None, title: str = "Attention"):
    """One head's attention weights (query rows x key columns) over the tokens of one sentence."""
    attention = np.asarray(attention)
    if attention.shape != (len(tokens), len(tokens)):
        raise ValueError(f"Attention of shape {attention.shape} does not match {len(tokens)} tokens.")
    ax = ax or plt.subplots(figsize=(0.35 * len(tokens) + 2, 0.35 * len(tokens) + 1.5))[1]
    ax.imshow(attention, cmap="viridis", vmin=0)
    ax.set(xticks=range(len(tokens)), yticks=range(len(tokens)), title=title)
    ax.set_xticklabels(tokens, rotation=90)
    ax.set_yticklabels(tokens)
    return ax


def sweep(x, ys: dict, xlabel: str, ylabel: str, ax=None, logx: bool = False, title: str = ""):
    """Lines of a metric against a swept setting: `ys = {"label": values}`."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for name, values in ys.items():
        ax.plot(x, values, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(ys) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def against_budget(found: dict, methods, ax=None, title: str = "Test accuracy against the step budget"):
    """Test accuracy of `methods` at every step budget of the results store (`results.cells`): the mean of the seeds
    as a line, each seed as a dot, the frozen probe as a dashed line (chapters 06-11, "At a longer budget"; 17)."""
    from .tuning.leaderboard import PROBE

    ax = ax or plt.subplots(figsize=(6.5, 3.8))[1]
    shown = []
    for name in methods:
        cells = sorted((steps, cell) for (method, steps), cell in found.items() if method == name and cell.complete)
        if not cells:
            raise ValueError(f"The store holds no complete cell of {name!r}: known methods are "
                             f"{sorted({m for m, _ in found if m != PROBE.name})}.")
        steps = [s for s, _ in cells]
        line, = ax.plot(steps, [c.values("test_accuracy").mean() for _, c in cells], marker="o", label=name)
        for s, cell in cells:
            ax.scatter([s] * len(cell.runs), cell.values("test_accuracy"), color=line.get_color(), s=12, alpha=0.5)
        shown += steps
    probe = found.get((PROBE.name, 0))
    if probe is not None and probe.complete:
        ax.axhline(probe.values("test_accuracy")[0], color="grey", linestyle="--", label="frozen probe")
    budgets = sorted(set(shown))
    ax.set(xscale="log", xlabel="optimiser steps (batches of 32)", ylabel="test accuracy", title=title)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
