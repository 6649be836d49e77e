"""mtlib.attention: attention maps of encoders and decoders, per layer and head (chapter 04)."""
import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

import mtlib
from mtlib import attention, zoo
from mtlib.attention import AttentionError

TEXT = "The plot was predictable, but the acting was wonderful."


@pytest.fixture(scope="module")
def cfg():
    return mtlib.setup("smoke", verbose=False)


@pytest.fixture(scope="module")
def encoder(cfg):
    return zoo.load("encoder", cfg, num_labels=2, attn_implementation="eager")


def tiny_decoder(vocab_size: int) -> LlamaForCausalLM:
    """A small random Llama (a causal decoder), built from a config: no download."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    model.set_attn_implementation("eager")
    return model


def test_shape_is_layers_heads_tokens_tokens_and_rows_sum_to_one(encoder):
    model, tokenizer = encoder
    maps = attention.attention_maps(model, tokenizer, TEXT)
    n = len(tokenizer(TEXT)["input_ids"])
    assert maps.weights.shape == (model.config.num_hidden_layers, model.config.num_attention_heads, n, n)
    assert (maps.num_layers, maps.num_heads) == maps.weights.shape[:2]
    assert np.allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert (maps.weights >= 0).all()
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]" and len(maps.tokens) == n
    assert maps.special.tolist() == [True] + [False] * (n - 2) + [True]


def test_head_and_special_share(encoder):
    model, tokenizer = encoder
    maps = attention.attention_maps(model, tokenizer, TEXT)
    assert np.array_equal(maps.head(2, 3), maps.weights[2, 3])
    share = maps.to_special()
    assert share.shape == (maps.num_layers, maps.num_heads)
    assert ((share >= 0) & (share <= 1 + 1e-6)).all()
    with pytest.raises(AttentionError, match="layers"):
        maps.head(maps.num_layers, 0)


def test_decoder_maps_are_causal(encoder):
    _, tokenizer = encoder
    model = tiny_decoder(tokenizer.vocab_size)
    maps = attention.attention_maps(model, tokenizer, TEXT)
    n = len(maps.tokens)
    assert maps.weights.shape == (2, 4, n, n)
    assert np.allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert np.allclose(np.triu(maps.weights, k=1), 0.0)  # no token reads from a later token


def test_model_without_attentions_raises_a_clear_error(cfg):
    model, tokenizer = zoo.load("encoder", cfg, num_labels=2)  # default: sdpa, which returns no weights
    if model.config._attn_implementation == "eager":
        pytest.skip("this transformers version loads eager attention by default")
    with pytest.raises(AttentionError, match='attn_implementation="eager"'):
        attention.attention_maps(model, tokenizer, TEXT)


def test_empty_text_raises(encoder):
    model, tokenizer = encoder
    with pytest.raises(AttentionError, match="non-empty"):
        attention.attention_maps(model, tokenizer, "   ")


def test_training_mode_is_restored(encoder):
    model, tokenizer = encoder
    model.train()
    attention.attention_maps(model, tokenizer, TEXT)
    assert model.training
    model.eval()
    attention.attention_maps(model, tokenizer, TEXT)
    assert not model.training


def test_change_per_layer(encoder):
    model, tokenizer = encoder
    before = attention.attention_maps(model, tokenizer, TEXT)
    assert np.allclose(attention.change_per_layer(before, before), 0.0)
    query = attention.attention_maps(model, tokenizer, "A second, different sentence.")
    with pytest.raises(AttentionError, match="different texts"):
        attention.change_per_layer(before, query)
    last = zoo.transformer_layers(model)[-1]
    weight = next(p for name, p in last.named_parameters() if "query" in name and p.dim() == 2)
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(3.0)  # sharpen the last layer's attention only
        change = attention.change_per_layer(before, attention.attention_maps(model, tokenizer, TEXT))
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert change.shape == (model.config.num_hidden_layers,)
    assert np.allclose(change[:-1], 0.0, atol=1e-6) and change[-1] > 1e-3
