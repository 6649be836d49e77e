"""Trainable versus total parameters, in all and per module (chapter 02; every PEFT chapter)."""
from __future__ import annotations

import pandas as pd
from torch import nn


def count_parameters(model: nn.Module) -> dict:
    """`{"trainable": ..., "total": ..., "percent": ...}` (shared weights counted once)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


def parameter_report(model: nn.Module, depth: int = 2) -> pd.DataFrame:
    """Parameters per module, grouped by the first `depth` parts of their names (e.g. `bert.encoder`)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}.")
    rows: dict[str, list[int]] = {}
    for name, p in model.named_parameters():
        key = ".".join(name.split(".")[:depth])
        trainable, total = rows.setdefault(key, [0, 0])
        rows[key] = [trainable + (p.numel() if p.requires_grad else 0), total + p.numel()]
    frame = pd.DataFrame([(k, t, n) for k, (t, n) in rows.items()], columns=["module", "trainable", "total"])
    frame["trainable %"] = (100 * frame["trainable"] / frame["total"]).round(2)
    return frame.set_index("module")
