"""mtlib.notebook.glue: the same display output (bundle and metadata) as myst_nb.glue, so {glue} roles work."""
import numpy as np
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import mtlib
from mtlib import notebook

myst_glue = pytest.importorskip("myst_nb.ext.glue")

VALUES = [0.8734, 42, "ninety percent", pd.DataFrame({"acc": [0.81, 0.92]}, index=["a", "b"])]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """An IPython shell (its history goes to a temporary IPYTHONDIR), as in a notebook kernel."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
        yield InteractiveShell.instance()


@pytest.fixture
def recorded(monkeypatch):
    """The calls that reach IPython's display(), from mtlib and from myst-nb."""
    calls = {"mtlib": [], "myst_nb": []}
    monkeypatch.setattr(notebook, "display", lambda *a, **k: calls["mtlib"].append((a, k)))
    monkeypatch.setattr(myst_glue, "ipy_display", lambda *a, **k: calls["myst_nb"].append((a, k)))
    return calls


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("shown", [False, True])
def test_glue_calls_display_like_myst_nb(shell, recorded, value, shown):
    assert mtlib.glue("ch00_value", value, display_value=shown) is value
    myst_glue.glue("ch00_value", value, display=shown)
    assert len(recorded["mtlib"]) == len(recorded["myst_nb"]) == 1
    assert recorded["mtlib"][0] == recorded["myst_nb"][0]  # same bundle, same metadata, same keywords
    (bundle,), kwargs = recorded["mtlib"][0]
    assert kwargs["raw"] is True
    assert kwargs["metadata"]["scrapbook"] == {"name": "ch00_value",
                                               "mime_prefix": "" if shown else "application/papermill.record/"}
    prefix = "" if shown else "application/papermill.record/"
    assert f"{prefix}text/plain" in bundle and all(key.startswith(prefix) for key in bundle)
    if not isinstance(value, pd.DataFrame):
        assert bundle[f"{prefix}text/plain"] == repr(value)


@pytest.mark.parametrize("scalar", [np.float64(0.125), np.int64(7), np.float32(0.5)], ids=lambda v: type(v).__name__)
def test_numpy_scalars_are_glued_as_python_numbers(shell, recorded, scalar):
    """myst-nb would store `np.float64(0.125)`, which a {glue:text}`name:.3f` role cannot format."""
    assert mtlib.glue("ch00_value", scalar) == scalar.item()
    myst_glue.glue("ch00_value", scalar.item(), display=False)
    assert recorded["mtlib"][0] == recorded["myst_nb"][0]
    (bundle,), _ = recorded["mtlib"][0]
    assert bundle["application/papermill.record/text/plain"] == repr(scalar.item())


def test_glue_output_captured_in_a_shell(shell):
    """End to end: what a kernel publishes for mtlib.glue equals what it publishes for myst_nb.glue."""
    with capture_output() as ours:
        mtlib.glue("ch00_acc", 0.8734)
    with capture_output() as theirs:
        myst_glue.glue("ch00_acc", 0.8734, display=False)
    assert len(ours.outputs) == len(theirs.outputs) == 1
    assert ours.outputs[0].data == theirs.outputs[0].data == {"application/papermill.record/text/plain": "0.8734"}
    assert ours.outputs[0].metadata == theirs.outputs[0].metadata
    assert ours.outputs[0].metadata["scrapbook"] == {"name": "ch00_acc", "mime_prefix": "application/papermill.record/"}
    assert ours.stdout == theirs.stdout == ""


def test_glue_html_bundle(shell, recorded):
    frame = VALUES[-1]
    mtlib.glue("ch00_table", frame)
    (bundle,), _ = recorded["mtlib"][0]
    assert bundle["application/papermill.record/text/html"] == frame._repr_html_()
