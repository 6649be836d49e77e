"""mtlib.plot: every figure function draws what it should on an Axes, and rejects inputs of the wrong shape."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from mtlib import plot  # noqa: E402
from mtlib.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def texts(ax):
    return [t.get_text() for t in ax.texts]


def ticklabels(labels):
    return [t.get_text() for t in labels]


# -------------------------------------------------------------------------------------------- loss_curves
def test_loss_curves():
    histories = {"full": History(steps=[4.0, 2.0, 0.0, 2.0]), "lora": History(steps=[1.0, 1.0, 1.0])}
    ax = plot.loss_curves(histories, smooth=2)
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2 and len(ax.images) == 0
    full, lora = ax.lines
    np.testing.assert_allclose(full.get_xdata(), [2, 3, 4])  # the step at which each running mean ends
    np.testing.assert_allclose(full.get_ydata(), [3, 1, 1])
    np.testing.assert_allclose(lora.get_ydata(), [1, 1])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["full", "lora"]
    assert ax.get_xlabel() == "optimiser step" and ax.get_ylabel() == "training loss"


def test_loss_curves_short_history_and_given_axes():
    _, ax = plt.subplots()
    assert plot.loss_curves({"run": History(steps=[3.0, 1.0])}, smooth=10, ax=ax) is ax
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_xdata(), [2])
    np.testing.assert_allclose(line.get_ydata(), [2])
    plot.loss_curves({"raw": History(steps=[3.0, 1.0, 5.0])}, smooth=1, ax=ax)
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [3, 1, 5])


def test_loss_curves_empty_history():
    with pytest.raises(ValueError):
        plot.loss_curves({"nothing": History()})


# --------------------------------------------------------------------------------------- confusion_matrix
def test_confusion_matrix():
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    ax = plot.confusion_matrix(cm, ["neg", "neu", "pos"], title="CM")
    assert isinstance(ax, Axes)
    assert len(ax.images) == 1 and len(ax.lines) == 0
    np.testing.assert_array_equal(ax.images[0].get_array(), cm)
    assert texts(ax) == [str(v) for v in cm.ravel()]  # row-major: row = true class
    assert ax.texts[1].get_position() == (1, 0)  # the count of (true 0, predicted 1) sits in column 1, row 0
    colours = [t.get_color() for t in ax.texts]
    assert colours[8] == "white" and colours[1] == "black"  # light text on dark cells (above half the maximum)
    assert ticklabels(ax.get_xticklabels()) == ["neg", "neu", "pos"] == ticklabels(ax.get_yticklabels())
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true" and ax.get_title() == "CM"


@pytest.mark.parametrize("cm, names", [(np.zeros((3, 3)), ["a", "b"]), (np.zeros((2, 3)), ["a", "b"]),
                                       (np.zeros(4), ["a", "b"])])
def test_confusion_matrix_bad_shape(cm, names):
    with pytest.raises(ValueError, match="class names"):
        plot.confusion_matrix(cm, names)


# ------------------------------------------------------------------------------------------------ heatmap
def test_heatmap():
    matrix = [[0.81, 0.62, 0.7], [0.55, 0.9, 0.66]]
    ax = plot.heatmap(matrix, ["imdb", "yelp"], ["imdb", "yelp", "amazon"], title="acc", fmt="{:.1f}")
    assert isinstance(ax, Axes)
    assert len(ax.images) == 1
    assert texts(ax) == ["0.8", "0.6", "0.7", "0.6", "0.9", "0.7"]
    assert ticklabels(ax.get_xticklabels()) == ["imdb", "yelp", "amazon"]
    assert ticklabels(ax.get_yticklabels()) == ["imdb", "yelp"]
    assert ax.get_title() == "acc"


def test_heatmap_with_spread():
    ax = plot.heatmap([[0.812, 0.6]], ["imdb"], ["imdb", "yelp"], spread=[[0.013, 0.02]])
    assert texts(ax) == ["0.81\n± 0.01", "0.60\n± 0.02"]
    with pytest.raises(ValueError, match=r"spread has shape \(2,\), but the matrix has shape \(1, 2\)"):
        plot.heatmap([[0.8, 0.6]], ["imdb"], ["imdb", "yelp"], spread=[0.01, 0.02])


@pytest.mark.parametrize("matrix, rows, cols", [
    (np.zeros((2, 3)), ["a", "b"], ["x", "y"]),       # a column without a label
    (np.zeros((2, 3)), ["a", "b", "c"], ["x", "y", "z"]),
    (np.zeros(3), ["a"], ["x", "y", "z"]),              # not a matrix
])
def test_heatmap_bad_shape(matrix, rows, cols):
    with pytest.raises(ValueError, match=rf"shape \({matrix.shape[0]},.*does not match {len(rows)} row labels"):
        plot.heatmap(matrix, rows, cols)


# -------------------------------------------------------------------------------------- attention_heatmap
def test_attention_heatmap():
    tokens = ["[CLS]", "good", "film", "[SEP]"]
    attention = np.full((4, 4), 0.25)
    ax = plot.attention_heatmap(attention, tokens, title="head 3")
    assert isinstance(ax, Axes)
    assert len(ax.images) == 1 and len(ax.texts) == 0
    np.testing.assert_array_equal(ax.images[0].get_array(), attention)
    assert ticklabels(ax.get_xticklabels()) == tokens == ticklabels(ax.get_yticklabels())
    assert ax.get_title() == "head 3"


@pytest.mark.parametrize("shape", [(3, 3), (4, 3), (4,), (1, 4, 4)])
def test_attention_heatmap_bad_shape(shape):
    with pytest.raises(ValueError, match="does not match 4 tokens"):
        plot.attention_heatmap(np.zeros(shape), ["a", "b", "c", "d"])


# -------------------------------------------------------------------------------------------------- sweep
def test_sweep_several_lines():
    ax = plot.sweep([1, 4, 16], {"LoRA": [0.8, 0.85, 0.86], "full": [0.9, 0.9, 0.91]}, "rank", "accuracy",
                    logx=True, title="rank sweep")
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 2 and len(ax.images) == 0
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [1, 4, 16])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.9, 0.9, 0.91])
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["LoRA", "full"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("rank", "accuracy", "rank sweep")


def test_sweep_one_line():
    ax = plot.sweep([0.1, 0.2], {"acc": [0.5, 0.6]}, "x", "y")
    assert len(ax.lines) == 1 and ax.get_legend() is None and ax.get_xscale() == "linear"


def test_sweep_bad_shape():
    with pytest.raises(ValueError):
        plot.sweep([1, 2, 3], {"acc": [0.5, 0.6]}, "x", "y")


def test_against_budget_draws_seeds_means_and_the_probe():
    from mtlib.tuning.leaderboard import PROBE
    from mtlib.tuning.results import Cell

    found = {("full fine-tuning", 50): Cell("full fine-tuning", 50, lr=3e-4, runs=[{"test_accuracy": a} for a in
                                                                                  (0.80, 0.82, 0.84)]),
             ("full fine-tuning", 200): Cell("full fine-tuning", 200, lr=1e-4, runs=[{"test_accuracy": a} for a in
                                                                                    (0.88, 0.88, 0.88)]),
             ("BitFit", 50): Cell("BitFit", 50, lr=1e-2, runs=[{"test_accuracy": 0.7}]),  # incomplete: left out
             (PROBE.name, 0): Cell(PROBE.name, 0, runs=[{"test_accuracy": 0.81}])}
    ax = plot.against_budget(found, ["full fine-tuning"])
    line = ax.get_lines()[0]
    assert list(line.get_xdata()) == [50, 200] and list(line.get_ydata()) == pytest.approx([0.82, 0.88])
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6  # every seed a dot
    assert ax.get_lines()[1].get_ydata()[0] == pytest.approx(0.81)  # the probe
    with pytest.raises(ValueError, match="no complete cell of 'BitFit'"):
        plot.against_budget(found, ["BitFit"])
    plt.close("all")
