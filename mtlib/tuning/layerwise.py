"""Layer-wise fine-tuning (chapter 06): train only the top k transformer blocks, unfreeze them one at a time
(ULMFiT's gradual unfreezing), and give lower blocks smaller learning rates (discriminative fine-tuning).

Blocks are numbered from the bottom (0, next to the embeddings) to the top (next to the head). "The top k" also
trains what reads the last block's output: the parts of the backbone above the stack (BERT's pooler, GPT-2's and
Llama's final norm) and the task head. k = 0 trains those alone; k = the number of blocks leaves only the embeddings
frozen.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .. import freeze
from .common import TuningError, check_fresh, mark_applied


@dataclass
class LayerwiseConfig:
    k: int = 2  # how many of the top blocks train


def block_names(model: nn.Module) -> list[str]:
    """The qualified names of the transformer blocks, bottom to top (`bert.encoder.layer.0`, ...)."""
    name, layers = freeze._stack(model)
    return [f"{name}.{i}" for i in range(len(layers))]


def around_stack(model: nn.Module) -> tuple[list[str], list[str]]:
    """The backbone's parts with parameters registered before the block stack (the embeddings) and after it."""
    base, stack = freeze.backbone(model), freeze._stack(model)[0]
    backbone = model.get_submodule(base) if base else model
    before, after, past = [], [], False
    for child, module in backbone.named_children():
        name = f"{base}.{child}" if base else child
        if freeze._under(stack, name):
            past = True
        elif any(True for _ in module.parameters()):
            (after if past else before).append(name)
    return before, after


def above(model: nn.Module) -> list[str]:
    """The backbone's parts above the block stack (BERT's pooler, GPT-2's and Llama's final norm)."""
    return around_stack(model)[1]


def top(model: nn.Module, k: int) -> list[str]:
    """What "train the top k blocks" trains: those blocks, the parts above them and the task head."""
    names = block_names(model)
    if not isinstance(k, int) or not 0 <= k <= len(names):
        raise TuningError(f"k counts the top blocks to train: a whole number from 0 to {len(names)} for "
                          f"{type(model).__name__}, which has {len(names)} blocks; got k={k!r}.")
    return names[len(names) - k:] + above(model) + freeze.head(model)


def apply(model: nn.Module, config: LayerwiseConfig = LayerwiseConfig()) -> dict:
    """Freeze everything but the top `config.k` blocks, the parts above them and the head, in place."""
    trained = top(model, config.k)
    check_fresh(model, "layerwise")
    freeze.train_only(model, *trained)
    mark_applied(model, "layerwise")
    return {"technique": "layerwise", "blocks": len(block_names(model)), "k": config.k, "added parameters": 0}


def depth_groups(model: nn.Module, lr: float, decay: float, weight_decay: float = 0.01) -> list[dict]:
    """Optimiser groups over *every* parameter, frozen ones included, with a rate that shrinks with depth:
    the head and the parts above the stack get `lr`, the top block `lr * decay`, the block below `lr * decay**2`,
    ..., the embeddings `lr * decay**(blocks + 1)`. Matrices are decayed, biases and norm weights not (chapter 02).

    Because the groups hold frozen parameters too, unfreezing a block later (gradual unfreezing) lets the same
    optimiser train it; AdamW skips a parameter while its gradient is None.
    """
    if not 0 < decay <= 1:
        raise TuningError(f"decay multiplies the rate once per block going down: a number in (0, 1], got {decay}.")
    names = block_names(model)
    levels = {name: len(names) - i for i, name in enumerate(names)}  # the top block is 1 below the head
    levels.update({name: len(names) + 1 for name in around_stack(model)[0]})  # the embeddings, below every block
    groups: dict[tuple, list] = {}
    for name, p in model.named_parameters():
        level = next((d for part, d in levels.items() if freeze.matches(name, part)), 0)  # 0: head, above
        groups.setdefault((level, p.dim() >= 2), []).append(p)
    return [{"params": params, "lr": lr * decay ** level, "weight_decay": weight_decay if matrix else 0.0}
            for (level, matrix), params in sorted(groups.items())]


def unfreeze_gradually(model, optimizer, every: int):
    """After every `every` optimiser steps, unfreeze the next block down (ULMFiT's gradual unfreezing)."""
    waiting = block_names(model)[::-1]  # top block first
    steps = 0

    def after_step(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps % every == 0 and waiting:
            freeze.unfreeze(model, waiting.pop(0))

    optimizer.register_step_post_hook(after_step)
    return optimizer
