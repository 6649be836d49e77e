"""Helpers for the notebooks themselves: gluing numbers into the prose (every chapter)."""
from __future__ import annotations

import IPython
from IPython.display import display


def glue(name: str, value, display_value: bool = False):
    """Store `value` under `name` so the prose can quote it: {glue:text}`name:.3f` (myst-nb's glue).

    The same output as `myst_nb.glue`, written out so that a chapter also runs where myst-nb is not installed
    (Colab). Returns the value.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # NumPy/torch scalars: glue the Python number
        value = value.item()
    bundle, metadata = IPython.core.formatters.format_display_data(value)
    prefix = "" if display_value else "application/papermill.record/"
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    return value
