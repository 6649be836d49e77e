"""Prefix tuning and P-tuning v2 (chapter 11): learned keys and values in front of every attention layer.

Prompt tuning (chapter 10) learns vectors at the input only; prefix tuning (Li & Liang) learns, for each of the
model's layers, `num_virtual_tokens` keys and values that every token attends to, as if a prompt had been read and
its keys and values kept. They reach the model through its public cache API: a forward pre-hook builds a
`DynamicCache` that already holds the prefix, passes it as `past_key_values`, and extends the attention mask to cover
it, as peft's `PrefixTuningConfig` does. On an encoder used for classification this is P-tuning v2 (Liu et al.).
With `projection=True` the prefix is produced by Li & Liang's reparameterisation: a small embedding through a
two-layer MLP, which they found trains more stably; after training only its output is needed. On a causal LM the
prefix can also start as the keys and values of a real text (`init_token_ids`), which is then exactly that text read
in front of every input.

A model that takes `past_key_values` counts its positions from the cache's length, so the text's positions start
after the prefix (BERT's absolute positions too): peft does the same, and a test checks the two agree. Positions passed
in for the text alone (`mtlib.prompting.LabelWordClassifier` counts them from each prompt's first real token) are
shifted by the prefix's length to match.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache

from .common import TuningError, check_fresh, mark_applied, train_only
from .prompt import context_length


@dataclass
class PrefixConfig:
    num_virtual_tokens: int = 20  # learned keys and values in front of every layer's attention
    projection: bool = False  # Li & Liang's reparameterisation: an MLP produces the prefix
    projection_hidden: int | None = None  # the MLP's inner size (None: the key/value width, as peft)
    init_token_ids: tuple[int, ...] = ()  # a causal LM's prefix can start as the keys and values of a text's tokens


class PrefixEncoder(nn.Module):
    """Every layer's prefix keys and values, as one (num_virtual_tokens, layers x 2 x kv_dim) matrix."""

    def __init__(self, n: int, layers: int, kv_heads: int, head_dim: int, projection: bool, hidden: int):
        super().__init__()
        self.layers, self.kv_heads, self.head_dim = layers, kv_heads, head_dim
        width = layers * 2 * kv_heads * head_dim
        self.projection = projection
        if projection:
            self.embedding = nn.Embedding(n, kv_heads * head_dim)
            self.transform = nn.Sequential(nn.Linear(kv_heads * head_dim, hidden), nn.Tanh(), nn.Linear(hidden, width))
        else:
            self.embedding = nn.Embedding(n, width)

    def forward(self) -> torch.Tensor:
        prefix = self.embedding.weight
        return self.transform(prefix) if self.projection else prefix

    def cache(self, batch_size: int, dtype: torch.dtype) -> DynamicCache:
        """A cache holding every layer's prefix keys and values, repeated over the batch."""
        kv = self().to(dtype)
        n = kv.shape[0]
        kv = kv.view(n, self.layers * 2, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)  # (2L, heads, n, dim)
        kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)
        return DynamicCache([(kv[2 * layer], kv[2 * layer + 1]) for layer in range(self.layers)])


def attention_shape(model: nn.Module) -> tuple[int, int, int]:
    """The number of layers, key/value heads and head size that a prefix must match."""
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if None in (layers, heads, hidden):
        raise TuningError(f"Prefix tuning cannot read the layer count, heads and width of a {config.model_type!r} "
                          "model from its config.")
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads  # grouped-query attention shares key heads
    return layers, kv_heads, head_dim


def keys_and_values_of(model: nn.Module, token_ids) -> torch.Tensor:
    """The keys and values a causal LM computes for `token_ids`, as a prefix matrix (one row per token): a prefix that
    starts so is that text, read once (Li & Liang's initialisation from the activations of real words)."""
    ids = torch.tensor([list(token_ids)], device=model.get_input_embeddings().weight.device)
    with torch.no_grad():
        cache = model.base_model(input_ids=ids, use_cache=True).past_key_values
    if cache is None:  # an encoder returns no cache
        raise TuningError(f"A prefix from text needs a causal language model, whose keys and values for a text do "
                          f"not depend on what follows it; {type(model).__name__} is not one: leave init_token_ids "
                          "empty.")
    kv = torch.stack([t[0] for layer in cache.layers for t in (layer.keys, layer.values)])  # (2L, heads, n, dim)
    return kv.permute(2, 0, 1, 3).reshape(ids.shape[1], -1).float()


def prepend_prefix(model: nn.Module, args: tuple, kwargs: dict):
    """The forward pre-hook: the prefix cache as `past_key_values`, and an attention mask that covers it."""
    if args:  # model(input_ids, ...) called positionally
        kwargs = {"input_ids": args[0], **kwargs}
    reference = kwargs["input_ids"] if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]
    batch_size = reference.shape[0]
    if kwargs.get("past_key_values") is not None:  # a cache already given would be dropped without a word
        raise TuningError("This call brings its own past_key_values (cached demonstrations, or generate's cache), "
                          "which the prefix would replace: concatenate the two caches layer by layer instead.")
    encoder = model.base_model.prefix_encoder
    kwargs["past_key_values"] = encoder.cache(batch_size, model.dtype)
    n = encoder.embedding.num_embeddings
    mask = kwargs.get("attention_mask")
    if mask is not None:
        kwargs["attention_mask"] = torch.cat([torch.ones(batch_size, n, dtype=mask.dtype, device=mask.device), mask],
                                             dim=1)
    if kwargs.get("position_ids") is not None:  # positions given for the text alone: they start after the prefix
        kwargs["position_ids"] = kwargs["position_ids"] + n
    return (), kwargs


def apply(model: nn.Module, config: PrefixConfig = PrefixConfig()) -> dict:
    """Give every attention layer learned prefix keys and values, in place; only they and the head train."""
    n = config.num_virtual_tokens
    if not isinstance(n, int) or n < 1:
        raise TuningError(f"Prefix tuning needs at least 1 virtual token, got num_virtual_tokens={n!r}.")
    context = context_length(model)
    if context is not None and n >= context:
        raise TuningError(f"A prefix of {n} fills the model's whole context of {context} positions, leaving no room "
                          f"for the text: use fewer (Li & Liang used 10 to 200).")
    if "past_key_values" not in inspect.signature(model.base_model.forward).parameters:
        raise TuningError(f"{type(model).__name__} takes no past_key_values, so a prefix cannot reach its attention "
                          "layers: use prompt tuning (chapter 10) or LoRA instead.")
    if config.init_token_ids and (config.projection or len(config.init_token_ids) != n):
        raise TuningError(f"A prefix from text has one virtual token per token and no MLP: got "
                          f"{len(config.init_token_ids)} token ids for num_virtual_tokens={n} with "
                          f"projection={config.projection}; set num_virtual_tokens=len(init_token_ids), projection=False.")
    layers, kv_heads, head_dim = attention_shape(model)
    check_fresh(model, "prefix")
    hidden = config.projection_hidden or kv_heads * head_dim
    device = model.get_input_embeddings().weight.device
    encoder = PrefixEncoder(n, layers, kv_heads, head_dim, config.projection, hidden).to(device)
    if config.init_token_ids:  # computed before the prefix is attached, from the model as it is
        with torch.no_grad():
            encoder.embedding.weight.copy_(keys_and_values_of(model, config.init_token_ids))
    model.base_model.prefix_encoder = encoder
    train_only(model, f"{model.base_model_prefix}.prefix_encoder")
    model.register_forward_pre_hook(prepend_prefix, with_kwargs=True)
    mark_applied(model, "prefix")
    return {"technique": "prefix", "virtual tokens": n, "layers": layers,
            "added parameters": sum(p.numel() for p in encoder.parameters())}
