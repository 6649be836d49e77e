"""Attention maps of any encoder or decoder, per layer and head, for one text (chapter 04).

Transformers only returns attention weights when the model runs its attention "by hand": load it with
`attn_implementation="eager"` (`mtlib.zoo.load(..., attn_implementation="eager")`). The fused kernels (`sdpa`,
flash attention) never form the weight matrix, so they return no attentions and `attention_maps` says so.

    maps = attention_maps(model, tokenizer, "The film was wonderful.")
    maps.weights.shape        # (layers, heads, tokens, tokens); every row sums to 1
    maps.tokens               # ['[CLS]', 'the', 'film', ...]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class AttentionError(RuntimeError):
    """A model or input from which no attention maps can be read."""


@dataclass
class AttentionMaps:
    """The attention weights of one text: `weights[layer, head, query, key]`, and its tokens."""

    weights: np.ndarray  # (layers, heads, tokens, tokens)
    tokens: list[str]
    special: np.ndarray  # (tokens,) True where the token is a special token ([CLS], [SEP], <s>, ...)

    @property
    def num_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def num_heads(self) -> int:
        return self.weights.shape[1]

    def head(self, layer: int, head: int) -> np.ndarray:
        """One head's (tokens x tokens) map: rows are queries, columns the keys they attend to."""
        if not (0 <= layer < self.num_layers and 0 <= head < self.num_heads):
            raise AttentionError(f"No layer {layer}, head {head}: the model has {self.num_layers} layers "
                                 f"(0..{self.num_layers - 1}) of {self.num_heads} heads (0..{self.num_heads - 1}).")
        return self.weights[layer, head]

    def to_special(self) -> np.ndarray:
        """(layers, heads): the share of attention that goes to special tokens, averaged over the queries."""
        return self.weights[..., self.special].sum(-1).mean(-1)


@torch.no_grad()
def attention_maps(model, tokenizer, text: str, max_length: int = 128) -> AttentionMaps:
    """The attention weights of every layer and head of `model` for one `text` (no padding, so rows sum to 1).

    Works for encoders (BERT, MiniLM) and decoders (GPT-2, Llama) alike; the model needs
    `attn_implementation="eager"`. Raises `AttentionError` when the model returns no attentions.
    """
    if not isinstance(text, str) or not text.strip():
        raise AttentionError("Give one non-empty text to read attention maps from.")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_length)
    try:
        out = model(**{k: v.to(device) for k, v in enc.items()}, output_attentions=True)
    finally:
        model.train(was_training)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        impl = getattr(model.config, "_attn_implementation", "unknown")
        raise AttentionError(
            f"{type(model).__name__} returned no attention weights (attention implementation: {impl!r}). Fused "
            "attention kernels such as 'sdpa' never form the weights: load the model with "
            "attn_implementation=\"eager\", e.g. mtlib.zoo.load(role, cfg, ..., attn_implementation=\"eager\"), "
            "or switch a loaded model with model.set_attn_implementation(\"eager\").")
    weights = torch.stack([a[0] for a in attentions]).float().cpu().numpy()  # (layers, heads, tokens, tokens)
    ids = enc["input_ids"][0].tolist()
    special = set(tokenizer.all_special_ids)
    return AttentionMaps(weights=weights, tokens=tokenizer.convert_ids_to_tokens(ids),
                         special=np.array([i in special for i in ids]))


def change_per_layer(before: AttentionMaps, after: AttentionMaps) -> np.ndarray:
    """(layers,): the mean absolute change of the attention weights in each layer (over heads, queries, keys).

    Both maps must come from the same text and tokenizer, so that the positions line up.
    """
    if before.tokens != after.tokens or before.weights.shape != after.weights.shape:
        raise AttentionError("The two attention maps come from different texts or models: compare maps of the same "
                             f"text ({len(before.tokens)} vs {len(after.tokens)} tokens, shapes "
                             f"{before.weights.shape} vs {after.weights.shape}).")
    return np.abs(after.weights - before.weights).mean(axis=(1, 2, 3))
