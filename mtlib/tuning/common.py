"""What every technique of `mtlib.tuning` shares (chapters 06-11): finding the layers it changes by name, leaving
exactly its own parameters and the task head trainable, and saving or loading only those weights.

A technique module (`lora`, ...) has a config dataclass and `apply(model, config) -> dict`, which changes the model
in place and reports what it added. `save(model, path)` writes the trainable weights (the technique's and the head's:
a reloaded model without its head scores near chance); `load(model, path)` puts them back into a model to which the
same technique was applied.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .. import freeze


class TuningError(ValueError):
    """A technique that cannot be applied as asked: no matching layer, a bad size, applied twice, a wrong layer."""


def matching_modules(model: nn.Module, targets, kinds: tuple[type, ...]) -> dict[str, nn.Module]:
    """The modules whose name is one of `targets` or ends with `.target` (as peft matches `target_modules`).

    Raises a clear error, listing the model's layer names of the right kind, when nothing matches or a match is not
    a layer the technique can wrap.
    """
    targets = [targets] if isinstance(targets, str) else list(targets)
    found = {name: module for name, module in model.named_modules()
             if any(name == t or name.endswith("." + t) for t in targets)}
    kind_names = ", ".join(k.__name__ for k in kinds)
    layers = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, kinds)})
    if not found:
        raise TuningError(f"No module of {type(model).__name__} is named {targets}. Its {kind_names} layers are "
                          f"called: {', '.join(layers) or 'none'} (give the last part of a name, e.g. 'query').")
    wrong = {name: type(m).__name__ for name, m in found.items() if not isinstance(m, kinds)}
    if wrong:
        name, kind = next(iter(wrong.items()))
        raise TuningError(f"{name} is a {kind}, which this technique cannot wrap (it wraps {kind_names}). "
                          f"Layers it can wrap: {', '.join(layers)}.")
    return found


def check_fresh(model: nn.Module, technique: str) -> None:
    """Applying a technique a second time is an error (`mark_applied` records the first)."""
    if technique in getattr(model, "mtlib_tuning", []):
        raise TuningError(f"{technique} is already applied to this model: apply it once, to a freshly loaded model.")


def mark_applied(model: nn.Module, technique: str) -> None:
    """Record that `technique` changed this model."""
    model.mtlib_tuning = [*getattr(model, "mtlib_tuning", []), technique]


def replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put `new` where the submodule `name` was."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def train_only(model: nn.Module, *patterns: str) -> list[str]:
    """Freeze everything, then make the given parameters and the task head trainable (`mtlib.freeze`).

    A language model's own output layer (`lm_head`, often the input embeddings themselves) is pretrained, not a task
    head: it stays frozen, as when a soft prompt is trained through label words (chapter 10).
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    modules = dict(model.named_modules())
    heads = [name for name in freeze.head(model)  # a name may also be a parameter held outside the backbone
             if output is None or name not in modules or all(m is not output for m in modules[name].modules())]
    return freeze.train_only(model, *patterns, *heads)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights that training changes: the technique's and the head's (what `save` writes)."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save(model: nn.Module, path) -> int:
    """Write the trainable weights to a safetensors file; returns its size in bytes."""
    path = Path(path)
    save_file(trainable_state(model), str(path))
    return path.stat().st_size


def load(model: nn.Module, path) -> None:
    """Load weights written by `save` into a model to which the same technique was applied."""
    state = load_file(str(path))
    own = dict(model.named_parameters())
    missing = [k for k in state if k not in own]
    if missing:
        raise TuningError(f"{path} holds {missing[0]} (and {len(missing) - 1} more) that this model does not have: "
                          "apply the same technique, with the same settings, before loading.")
    with torch.no_grad():
        for name, tensor in state.items():
            own[name].copy_(tensor)
