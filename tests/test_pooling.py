"""mtlib.pooling: the last real token from the attention mask, for right, left and no padding.

Behaviour on tiny decoders built from configs (Llama with rotary positions, GPT-2 with absolute positions) and on
the real offline decoder: the pooled logits of a padded batch equal those of each text run alone, and reading
position -1 under right padding does not.
"""
import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from mtlib import pooling, zoo
from mtlib.pooling import PoolingError
from mtlib.runtime import Config

PAD = 0


# --------------------------------------------------------------------------------------------- the index
def test_index_right_padding():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    assert pooling.last_token_index(mask).tolist() == [2, 4, 0]


def test_index_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert pooling.last_token_index(mask).tolist() == [4, 4, 4]


def test_index_no_padding():
    mask = torch.ones(3, 7, dtype=torch.long)
    assert pooling.last_token_index(mask).tolist() == [6, 6, 6]


def test_index_accepts_bool_float_and_lists():
    expected = [1, 3]
    rows = [[1, 1, 0, 0], [0, 1, 1, 1]]
    assert pooling.last_token_index(torch.tensor(rows).bool()).tolist() == expected
    assert pooling.last_token_index(torch.tensor(rows, dtype=torch.float32)).tolist() == expected
    assert pooling.last_token_index(rows).tolist() == expected
    assert pooling.last_token_index(torch.tensor(rows)).dtype == torch.long


def test_gather_last_picks_the_last_real_position():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 1, 1]])
    states = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(3, 4, 2)
    pooled = pooling.gather_last(states, mask)
    assert pooled.shape == (3, 2)
    assert torch.equal(pooled, torch.stack([states[0, 1], states[1, 3], states[2, 3]]))
    # 2-D states (one number per position) pool to one number per row
    assert pooling.gather_last(states[..., 0], mask).tolist() == [2.0, 14.0, 22.0]


def test_blind_minus_one_reads_padding_under_right_padding():
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    states = torch.randn(2, 4, 3)
    pooled = pooling.gather_last(states, mask)
    assert torch.equal(pooled[1], states[1, -1])          # no padding: the same position
    assert not torch.equal(pooled[0], states[0, -1])      # right padding: -1 is a pad position


def test_position_ids_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert pooling.position_ids(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2], [0, 1, 2, 3, 4]]


# --------------------------------------------------------------------------------------------- bad input
def test_row_without_real_token_is_an_error():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    with pytest.raises(PoolingError, match=r"Row\(s\) \[1\].*no real token"):
        pooling.last_token_index(mask)
    with pytest.raises(PoolingError, match="no real token"):
        pooling.gather_last(torch.zeros(3, 3, 4), mask)


@pytest.mark.parametrize("mask", [torch.ones(5), torch.ones(2, 3, 4)])
def test_mask_must_be_two_dimensional(mask):
    with pytest.raises(PoolingError, match="2-D"):
        pooling.last_token_index(mask)


def test_mask_values_must_be_zero_or_one():
    with pytest.raises(PoolingError, match="0 .padding. and 1"):
        pooling.last_token_index(torch.tensor([[1, 2, 0]]))
    with pytest.raises(PoolingError, match="0 .padding. and 1"):
        pooling.last_token_index(torch.tensor([[1.0, 0.5]]))


def test_states_must_match_the_mask():
    with pytest.raises(PoolingError, match="do not match"):
        pooling.gather_last(torch.zeros(2, 5, 4), torch.ones(2, 4))
    with pytest.raises(PoolingError, match="do not match"):
        pooling.gather_last(torch.zeros(2, 4, 4), torch.ones(3, 4))


# --------------------------------------------------------------------------------------------- tiny models
def tiny_llama():
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=2, pad_token_id=PAD,
                         bos_token_id=1, eos_token_id=PAD)
    return LlamaForSequenceClassification(config)


def tiny_gpt2():
    config = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32, num_labels=2,
                        pad_token_id=PAD, bos_token_id=PAD, eos_token_id=PAD)
    return GPT2ForSequenceClassification(config)


TINY = {"llama": tiny_llama, "gpt2": tiny_gpt2}
TEXTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]


@pytest.fixture(params=list(TINY))
def tiny(request):
    torch.manual_seed(0)
    model = TINY[request.param]().eval()
    return request.param, model


def per_position_logits(model, ids, mask, positions=None):
    """The score layer applied at every position (what the classifier computes before it pools)."""
    hidden = model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
    return model.score(hidden)


def pad(texts, side):
    length = max(map(len, texts))
    ids = torch.full((len(texts), length), PAD)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for i, t in enumerate(texts):
        span = slice(0, len(t)) if side == "right" else slice(length - len(t), length)
        ids[i, span], mask[i, span] = torch.tensor(t), 1
    return ids, mask


@torch.no_grad()
def alone(model, texts):
    """Each text run on its own (no padding at all): its logits at its last position."""
    return torch.cat([per_position_logits(model, torch.tensor([t]), torch.ones(1, len(t), dtype=torch.long))[:, -1]
                      for t in texts])


@torch.no_grad()
def test_pooled_logits_equal_unpadded_logits_right_padding(tiny):
    _, model = tiny
    ids, mask = pad(TEXTS, "right")
    pooled = pooling.gather_last(per_position_logits(model, ids, mask), mask)
    torch.testing.assert_close(pooled, alone(model, TEXTS), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_position_minus_one_is_wrong_under_right_padding(tiny):
    _, model = tiny
    ids, mask = pad(TEXTS, "right")
    logits = per_position_logits(model, ids, mask)
    reference = alone(model, TEXTS)
    blind = logits[:, -1]
    torch.testing.assert_close(blind[1], reference[1], atol=1e-5, rtol=1e-5)  # the longest text has no padding
    for row in (0, 2):  # the padded rows: position -1 is a pad token, not the text's last token
        assert (blind[row] - reference[row]).abs().max() > 1e-3


@torch.no_grad()
def test_pooled_logits_equal_unpadded_logits_left_padding(tiny):
    _, model = tiny
    ids, mask = pad(TEXTS, "left")
    logits = per_position_logits(model, ids, mask, pooling.position_ids(mask))
    pooled = pooling.gather_last(logits, mask)
    torch.testing.assert_close(pooled, alone(model, TEXTS), atol=1e-5, rtol=1e-5)
    assert torch.equal(pooled, logits[:, -1])  # with left padding the last real token is at -1


@torch.no_grad()
def test_left_padding_shifts_absolute_positions_without_position_ids():
    torch.manual_seed(0)
    model = tiny_gpt2().eval()
    ids, mask = pad(TEXTS, "left")
    shifted = pooling.gather_last(per_position_logits(model, ids, mask), mask)
    assert (shifted[0] - alone(model, TEXTS)[0]).abs().max() > 1e-3


@torch.no_grad()
def test_pooling_matches_the_transformers_classifier(tiny):
    """transformers' *ForSequenceClassification pools at the rightmost non-pad id: the same on ordinary texts."""
    _, model = tiny
    for side in ("right", "left"):
        ids, mask = pad(TEXTS, side)
        positions = pooling.position_ids(mask)
        ours = pooling.gather_last(per_position_logits(model, ids, mask, positions), mask)
        theirs = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------- the real decoder
@pytest.fixture(scope="module")
def decoder():
    return zoo.load("decoder", Config(profile="local", device=torch.device("cpu")), head="classification",
                    num_labels=2)


@torch.no_grad()
def test_real_decoder_padding_invariance(decoder):
    model, tokenizer = decoder
    model.eval()
    texts = ["Ok, see you at six", "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert tokenizer.padding_side == "right" and batch["attention_mask"][0, -1] == 0
    hidden = model.base_model(**batch).last_hidden_state
    logits = model.score(hidden)
    pooled = pooling.gather_last(logits, batch["attention_mask"])
    single = torch.cat([model.score(model.base_model(**tokenizer([t], return_tensors="pt")).last_hidden_state)[:, -1]
                        for t in texts])
    torch.testing.assert_close(pooled, single, atol=1e-4, rtol=1e-4)
    assert (logits[0, -1] - single[0]).abs().max() > 1e-3  # position -1 of the padded short text is wrong
