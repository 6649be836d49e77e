"""Prompt tuning (chapter 10): a few learned vectors, "virtual tokens", put in front of every input of a frozen model.

`apply` gives the model's backbone a `soft_prompt` of num_virtual_tokens x hidden numbers and the model a forward
pre-hook: the hook looks the input ids up in the embedding table itself, puts the soft prompt in front, and extends
the attention mask (and BERT's token type ids) to cover it, as peft's `PromptTuningConfig` does. Every pretrained
weight is frozen; the soft prompt and the task head train. The prompt starts as standard-normal vectors ("random",
peft's RANDOM), as random rows of the vocabulary ("vocab", SAMPLE_VOCAB), or as the embeddings of a tokenised text,
repeated or cut to length ("text", TEXT).

A decoder classifier given embeddings instead of token ids cannot find the padding, so it reads its prediction at the
last position: pad its inputs on the left (chapter 10); the hook refuses a right-padded batch for such a model.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import nn

from .common import TuningError, check_fresh, mark_applied, train_only

INITS = ("random", "vocab", "text")


@dataclass
class PromptConfig:
    num_virtual_tokens: int = 20  # learned vectors in front of every input
    init: str = "random"  # "random", "vocab" (random rows of the vocabulary) or "text" (the rows of init_token_ids)
    init_token_ids: tuple[int, ...] = ()  # with init="text": a tokenised prompt, tokenizer(text)["input_ids"]


class SoftPrompt(nn.Module):
    """The learned vectors: one row of `weight` per virtual token."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)


def initial_prompt(embeddings: nn.Embedding, config: PromptConfig) -> torch.Tensor:
    """The soft prompt's starting value under `config.init` (float32, on the embeddings' device)."""
    table = embeddings.weight.detach()
    n = config.num_virtual_tokens
    if config.init == "random":
        return torch.randn(n, table.shape[1], device=table.device)
    if config.init == "vocab":
        ids = torch.randint(0, table.shape[0], (n,), device=table.device)
    else:  # "text": the prompt's tokens, repeated until there are enough, then cut to length
        repeats = math.ceil(n / len(config.init_token_ids))
        ids = torch.tensor((list(config.init_token_ids) * repeats)[:n], device=table.device)
    return table[ids].clone().float()


def prepend_prompt(model: nn.Module, args: tuple, kwargs: dict):
    """The forward pre-hook: input ids become embeddings with the soft prompt in front; mask and token types grow."""
    if args:  # model(input_ids, ...) called positionally
        kwargs = {"input_ids": args[0], **kwargs}
    mask = kwargs.get("attention_mask")
    if mask is not None and hasattr(model, "score") and bool((mask[:, -1] == 0).any()):
        # decoder classifiers (`score` head) given embeddings read the last position, here a pad token
        raise TuningError("A decoder classifier with a soft prompt reads its prediction at the last position (given "
                          "embeddings, it cannot find the padding), and this batch is padded on the right: set "
                          "tokenizer.padding_side = 'left'.")
    input_ids, embeds = kwargs.pop("input_ids", None), kwargs.pop("inputs_embeds", None)
    if embeds is None:
        embeds = model.get_input_embeddings()(input_ids)
    prompt = model.base_model.soft_prompt.weight
    n, p = embeds.shape[0], prompt.shape[0]
    kwargs["inputs_embeds"] = torch.cat([prompt.to(embeds.dtype).expand(n, -1, -1), embeds], dim=1)
    for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):  # the prompt is attended to, in segment 0
        if kwargs.get(key) is not None:
            value = kwargs[key]
            kwargs[key] = torch.cat([torch.full((n, p), fill, dtype=value.dtype, device=value.device), value], dim=1)
    kwargs.pop("position_ids", None)  # the model counts positions over prompt and text together, as peft lets it
    return (), kwargs


def insert_after_first(model: nn.Module, args: tuple, kwargs: dict):
    """A variant of `prepend_prompt` for an encoder (chapter 10's control): the soft prompt after the first token
    ([CLS]), and the text's positions kept as without a prompt (the prompt's vectors share position 0 with [CLS]), so
    that [CLS], which the pooler reads, and every word sit where pretraining put them."""
    if args:
        kwargs = {"input_ids": args[0], **kwargs}
    input_ids, embeds = kwargs.pop("input_ids", None), kwargs.pop("inputs_embeds", None)
    if embeds is None:
        embeds = model.get_input_embeddings()(input_ids)
    prompt = model.base_model.soft_prompt.weight
    n, p, length = embeds.shape[0], prompt.shape[0], embeds.shape[1]
    kwargs["inputs_embeds"] = torch.cat([embeds[:, :1], prompt.to(embeds.dtype).expand(n, -1, -1), embeds[:, 1:]], dim=1)
    for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):
        if kwargs.get(key) is not None:
            value = kwargs[key]
            kwargs[key] = torch.cat([value[:, :1], torch.full((n, p), fill, dtype=value.dtype, device=value.device),
                                     value[:, 1:]], dim=1)
    positions = torch.arange(length, device=embeds.device)
    kwargs["position_ids"] = torch.cat([positions[:1], positions.new_zeros(p), positions[1:]]).expand(n, -1)
    return (), kwargs


HOOKS = {"front": prepend_prompt, "after_first": insert_after_first}


def context_length(model: nn.Module) -> int | None:
    """How many positions the model can take (None when it does not say)."""
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def apply(model: nn.Module, config: PromptConfig = PromptConfig(), where: str = "front") -> dict:
    """Give the model a soft prompt in place; only the prompt and the task head stay trainable. `where`: "front" (in
    front of the input, as peft does) or "after_first" (after an encoder's first token, the text's positions kept:
    `insert_after_first`)."""
    if where not in HOOKS:
        raise TuningError(f"where is 'front' or 'after_first', got {where!r}.")
    if where == "after_first" and (hasattr(model, "score") or type(model).__name__.endswith("ForCausalLM")):
        raise TuningError("where='after_first' keeps an encoder's [CLS] first; a decoder reads the last position: "
                          "use where='front'.")
    n = config.num_virtual_tokens
    if not isinstance(n, int) or n < 1:
        raise TuningError(f"Prompt tuning needs at least 1 virtual token, got num_virtual_tokens={n!r}.")
    if config.init not in INITS:
        raise TuningError(f"Unknown prompt initialisation {config.init!r}: choose one of {', '.join(INITS)}.")
    if config.init == "text" and not config.init_token_ids:
        raise TuningError("init='text' starts from a text's tokens: pass PromptConfig(init='text', "
                          "init_token_ids=tokenizer(text)['input_ids']).")
    context = context_length(model)
    if context is not None and n >= context:
        raise TuningError(f"{n} virtual tokens fill the model's whole context of {context} positions, leaving no room "
                          f"for the text: use fewer (Lester et al. used 1 to 150).")
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding) or "inputs_embeds" not in inspect.signature(model.forward).parameters:
        raise TuningError(f"{type(model).__name__} does not take input embeddings from an nn.Embedding table, so a "
                          "soft prompt cannot be put in front of its inputs.")
    if config.init == "text" and max(config.init_token_ids) >= embeddings.num_embeddings:
        raise TuningError(f"init_token_ids holds {max(config.init_token_ids)}, beyond the vocabulary of "
                          f"{embeddings.num_embeddings}: tokenise the text with this model's tokenizer.")
    check_fresh(model, "prompt")
    model.base_model.soft_prompt = SoftPrompt(initial_prompt(embeddings, config))
    train_only(model, f"{model.base_model_prefix}.soft_prompt")
    model.register_forward_pre_hook(HOOKS[where], with_kwargs=True)
    mark_applied(model, "prompt")
    return {"technique": "prompt", "virtual tokens": n, "added parameters": model.base_model.soft_prompt.weight.numel()}
