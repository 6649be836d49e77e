"""BitFit (chapter 07): train only the bias terms of a pretrained model, and its task head.

Every bias vector of the body stays trainable, every weight matrix and norm scale is frozen; the head (new, so it must
learn) trains whole, weight included. A loop often seen in tutorials (`if "bias" not in name: requires_grad = False`)
freezes the new head's weight as well: chapter 07 measures what that costs.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .common import TuningError, check_fresh, mark_applied, train_only


@dataclass
class BitFitConfig:
    pass  # nothing to choose: every bias trains


def bias_names(model: nn.Module) -> list[str]:
    """The qualified names of the model's bias parameters."""
    return [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] == "bias"]


def apply(model: nn.Module, config: BitFitConfig = BitFitConfig()) -> dict:
    """Leave only the biases and the task head trainable, in place."""
    check_fresh(model, "bitfit")
    biases = bias_names(model)
    if not biases:
        raise TuningError(f"{type(model).__name__} has no bias parameters (Llama-style layers have none), so BitFit "
                          "has nothing to train. Choose another technique, e.g. LoRA.")
    train_only(model, *biases)
    mark_applied(model, "bitfit")
    return {"technique": "bitfit", "biases": len(biases), "added parameters": 0}  # it only chooses what trains
