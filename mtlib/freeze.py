"""Freezing by name: freeze everything, then unfreeze the modules a chapter names (chapter 05; the PEFT chapters).

    from mtlib import freeze
    names = freeze.train_only(model, freeze.last_block(model), freeze.final_norm(model), *freeze.head(model))

A pattern is a module or parameter name (`model.layers.29`, which also covers everything inside it), or a glob
(`*.layers.29.*`, `*bias`). A pattern that matches no parameter is an error that lists real module names, so a
name written for one architecture (`transformer.h.11`, GPT-2) fails loudly on another (Llama's `model.layers.29`).

The finders name the parts of any architecture without hard-coding them:

- `last_block`: the last module of the block stack (`mtlib.zoo.transformer_layers`);
- `final_norm`: the norm applied after the stack (Llama's `model.norm`, GPT-2's `transformer.ln_f`);
- `head`: what sits outside the backbone (the `score` or `classifier` layer of a classifier, the `lm_head`).

The backbone (`backbone(model)` names it) is the smallest module that holds both the block stack and the input
embeddings. Tied weights are one tensor: unfreezing `lm_head` also unfreezes the input embeddings it shares.
"""
from __future__ import annotations

import fnmatch
import re

from torch import nn

from .zoo import ZooError, transformer_layers


class FreezeError(ValueError):
    """A pattern that matches nothing, or a part (block, norm, head) that a model does not have."""


# ------------------------------------------------------------------------------------------------ by name
def _flatten(patterns) -> list[str]:
    out = []
    for p in patterns:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, (list, tuple, set)):
            out.extend(_flatten(p))
        else:
            raise FreezeError(f"Patterns are strings (module names or globs), got {p!r}.")
    return out


def matches(name: str, pattern: str) -> bool:
    """Whether parameter `name` falls under `pattern`: the same name, a module prefix at a dot, or a glob.

    `model.layers.1` covers `model.layers.1.mlp.up_proj.weight` but not `model.layers.10.mlp.up_proj.weight`.
    """
    if name == pattern or name.startswith(pattern + "."):
        return True
    return any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(name, pattern)


def module_names(model: nn.Module, limit: int = 16) -> list[str]:
    """Some real module names of `model`, for error messages: up to three levels deep, a numbered list of blocks
    shown as its first and last entries."""
    names = [n for n, _ in model.named_modules() if n and n.count(".") < 3]
    key = lambda n: re.sub(r"(^|\.)\d+(?=\.|$)", r"\1N", n)
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(key(n), []).append(n)
    out, elided = [], set()
    for n in names:
        group = groups[key(n)]
        if len(group) <= 2 or n in (group[0], group[-1]):
            out.append(n)
        elif key(n) not in elided:
            elided.add(key(n))
            out.append("...")
    return out if len(out) <= limit else out[: limit - 1] + ["..."]


def _names_hint(model: nn.Module) -> str:
    return ", ".join(module_names(model))


def parameter_names(model: nn.Module, pattern: str) -> list[str]:
    """The parameter names under `pattern` (tied weights are listed under each of their names)."""
    return [n for n, _ in model.named_parameters(remove_duplicate=False) if matches(n, pattern)]


def freeze_all(model: nn.Module) -> nn.Module:
    """Set `requires_grad=False` on every parameter. Returns the model."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _resolve(model: nn.Module, patterns) -> list[str]:
    """The parameter names under the patterns, in model order; FreezeError when a pattern matches nothing."""
    patterns = _flatten(patterns)
    if not patterns:
        raise FreezeError("Name at least one module, e.g. freeze.head(model) or freeze.last_block(model).")
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    for pattern in patterns:
        if not any(matches(n, pattern) for n in names):
            raise FreezeError(
                f"The pattern {pattern!r} matches no parameter of {type(model).__name__}. Its modules are named "
                f"like: {_names_hint(model)}. Use freeze.last_block(model), freeze.final_norm(model) and "
                "freeze.head(model) to find names that hold for any architecture.")
    return [n for n in names if any(matches(n, p) for p in patterns)]


def unfreeze(model: nn.Module, *patterns) -> list[str]:
    """Set `requires_grad=True` on the parameters under each pattern; returns their names.

    Every pattern must match at least one parameter (FreezeError otherwise, listing real module names; nothing is
    changed then). Tied weights are one tensor: unfreezing `lm_head` also unfreezes the input embeddings it shares.
    """
    names = _resolve(model, patterns)
    params = dict(model.named_parameters(remove_duplicate=False))
    for n in names:
        params[n].requires_grad_(True)
    return names


def train_only(model: nn.Module, *patterns) -> list[str]:
    """Freeze everything, then unfreeze the parameters under `patterns`. Returns the trainable parameter names.

    The patterns are checked first: when one matches nothing, FreezeError and the model is left as it was.
    Build the optimiser after this call, over `[p for p in model.parameters() if p.requires_grad]`.
    """
    names = _resolve(model, patterns)
    freeze_all(model)
    params = dict(model.named_parameters(remove_duplicate=False))
    for n in names:
        params[n].requires_grad_(True)
    return trainable(model)


def trainable(model: nn.Module) -> list[str]:
    """The names of the parameters that require gradients."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


# ------------------------------------------------------------------------------------------------ finders
def _qualified(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules(remove_duplicate=False):
        if m is module:
            return name
    raise FreezeError(f"{type(module).__name__} is not a submodule of {type(model).__name__}.")


def _stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The block stack and its qualified name, also inside a wrapper that has no `config` of its own."""
    for m in model.modules():
        if getattr(m, "config", None) is None:
            continue
        try:
            layers = transformer_layers(m)
        except (ZooError, AttributeError):
            continue
        return _qualified(model, layers), layers
    raise FreezeError(f"Found no stack of transformer blocks in {type(model).__name__} (no submodule with a config "
                      f"naming its number of layers). Its modules: {_names_hint(model)}.")


def _embeddings(model: nn.Module) -> str:
    """The qualified name of the input embeddings (`get_input_embeddings()`, else the first nn.Embedding)."""
    for m in model.modules():
        getter = getattr(m, "get_input_embeddings", None)
        if callable(getter):
            try:
                emb = getter()
            except (NotImplementedError, AttributeError):
                continue
            if isinstance(emb, nn.Module):
                return _qualified(model, emb)
    for name, m in model.named_modules():
        if isinstance(m, nn.Embedding):
            return name
    raise FreezeError(f"Found no input embeddings in {type(model).__name__}.")


def _common_prefix(a: str, b: str) -> str:
    common = []
    for x, y in zip(a.split("."), b.split(".")):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


def backbone(model: nn.Module) -> str:
    """The qualified name of the backbone: the smallest module holding the block stack and the input embeddings
    (`model` in Llama's classifier, `transformer` in GPT-2's, `bert` in BERT's; "" when `model` is a backbone)."""
    return _common_prefix(_stack(model)[0], _embeddings(model))


def _under(name: str, prefix: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


def last_block(model: nn.Module) -> str:
    """The qualified name of the last transformer block (`model.layers.29`, `transformer.h.11`)."""
    name, layers = _stack(model)
    return f"{name}.{len(layers) - 1}"


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, getattr(nn, "RMSNorm", nn.LayerNorm))) or \
        type(module).__name__.lower().endswith("norm")


def final_norm(model: nn.Module) -> str:
    """The qualified name of the norm applied after the block stack (`model.norm`, `transformer.ln_f`).

    Found as a norm module (LayerNorm, RMSNorm or a class whose name ends in "Norm") inside the backbone but outside
    the block stack and the embeddings, preferring the last one registered after the stack. Post-LN models such as
    BERT have none (they normalise inside every block): FreezeError.
    """
    stack_name, emb = _stack(model)[0], _embeddings(model)
    base = _common_prefix(stack_name, emb)
    # the child of the backbone that holds the embeddings (BERT's `embeddings`, with its own LayerNorm)
    emb_part = ".".join(emb.split(".")[: len(base.split(".")) + 1]) if base else emb.split(".")[0]
    after, before, past_stack = [], [], False
    for name, module in model.named_modules():
        if name == stack_name:
            past_stack = True
        if not _under(name, base) or _under(name, stack_name) or _under(name, emb_part) or not _is_norm(module):
            continue
        (after if past_stack else before).append(name)
    candidates = after or before
    if not candidates:
        raise FreezeError(
            f"{type(model).__name__} has no norm after its block stack {stack_name!r} (post-LN models such as BERT "
            f"normalise inside every block). Its modules: {_names_hint(model)}.")
    return candidates[-1]


def head(model: nn.Module) -> list[str]:
    """The qualified names of the modules outside the backbone that hold parameters (`["score"]` for a decoder
    classifier, `["classifier"]` for BERT's, `["pre_classifier", "classifier"]` for DistilBERT's, `["lm_head"]`)."""
    base = backbone(model)
    if base == "":
        raise FreezeError(f"{type(model).__name__} is a backbone without a head: load it with a head "
                          "(mtlib.zoo.load(..., head='classification')) or add one.")
    out = []
    for name, module in model.named_modules():
        if name == "" or _under(name, base) or _under(base, name):  # the backbone, or one of its ancestors
            continue
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        if not _under(base, parent):  # only the top-most modules outside the backbone
            continue
        if any(True for _ in module.parameters()):
            out.append(name)
    for name, module in model.named_modules():  # parameters held directly by the backbone's ancestors
        if name != base and _under(base, name):
            out.extend(f"{name}.{p}" if name else p for p, _ in module.named_parameters(recurse=False))
    if not out:
        raise FreezeError(f"{type(model).__name__} has no parameters outside its backbone {base!r}, so it has no "
                          f"head. Its modules: {_names_hint(model)}.")
    return out
