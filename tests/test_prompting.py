"""Label-word classification with a frozen causal LM (mtlib.prompting, chapter 10): padding on the left reads every
prompt's last token, cached demonstrations give the logits of reading them again, calibration, clear errors; and a
soft prompt trained through the label words leaves the language model's own head frozen."""
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from mtlib import prompting
from mtlib.prompting import LabelWordClassifier, PromptingError
from mtlib.tuning import prefix, prompt
from mtlib.tuning.common import TuningError
from tiny_models import HIDDEN, one_thread  # noqa: F401 (one_thread: autouse)

WORDS = [11, 12]


def tiny_llama_lm(seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=100, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=0, bos_token_id=1, eos_token_id=1, tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2_lm(seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=100, n_embd=HIDDEN, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    return GPT2LMHeadModel(config).eval()


def left_padded(rows):
    """Token-id lists as one batch padded on the left with 0."""
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def next_token_logits(lm, ids):
    """The unpadded reference: the LM's next-token logits of the label words after `ids`."""
    with torch.no_grad():
        return lm(input_ids=torch.tensor([ids])).logits[0, -1, WORDS]


@pytest.mark.parametrize("make", [tiny_llama_lm, tiny_gpt2_lm], ids=["llama", "gpt2"])
def test_left_padding_reads_each_prompt_as_if_alone(make):
    lm = make()
    rows = [[5, 6, 7, 8, 9], [5, 6], [20, 21, 22]]
    ids, mask = left_padded(rows)
    with torch.no_grad():
        got = LabelWordClassifier(lm, WORDS)(input_ids=ids, attention_mask=mask).logits
    for row, expected in zip(got, [next_token_logits(lm, r) for r in rows]):
        torch.testing.assert_close(row, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [tiny_llama_lm, tiny_gpt2_lm], ids=["llama", "gpt2"])
def test_cached_demonstrations_give_the_logits_of_reading_them_again(make):
    lm = make()
    demonstrations = [30, 31, 32, 33, 34, 35]
    rows = [[5, 6, 7, 8], [40, 41]]
    ids, mask = left_padded(rows)
    with torch.no_grad():
        got = LabelWordClassifier(lm, WORDS, demonstrations)(input_ids=ids, attention_mask=mask).logits
        again = LabelWordClassifier(lm, WORDS, demonstrations)(input_ids=ids, attention_mask=mask).logits
    for row, r in zip(got, rows):
        torch.testing.assert_close(row, next_token_logits(lm, demonstrations + r), atol=1e-5, rtol=0)
    torch.testing.assert_close(got, again, atol=0, rtol=0)  # the cache is not changed by being read


def test_a_right_padded_batch_is_refused_with_the_fix():
    ids, mask = left_padded([[5, 6, 7], [5]])
    with pytest.raises(PromptingError, match="padding_side = 'left'"):
        LabelWordClassifier(tiny_llama_lm(), WORDS)(input_ids=ids.flip(1), attention_mask=mask.flip(1))


def test_the_loss_is_cross_entropy_over_the_label_words():
    ids, mask = left_padded([[5, 6, 7], [8, 9]])
    labels = torch.tensor([0, 1])
    out = LabelWordClassifier(tiny_llama_lm(), WORDS)(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


class WordTokenizer:
    """A stand-in tokenizer: each space-separated piece is a token."""
    vocab = {" good": 5, " bad": 6, " very": 7}

    def __call__(self, text, add_special_tokens=True):
        pieces = [" " + p for p in text.split()] if text.startswith(" ") else text.split()
        return {"input_ids": [self.vocab.get(p, 99) for p in pieces]}

    def decode(self, ids):
        return "?"


def test_label_words_must_be_single_distinct_tokens():
    assert prompting.label_word_ids(WordTokenizer(), [" bad", " good"]) == [6, 5]
    with pytest.raises(PromptingError, match="2 tokens"):
        prompting.label_word_ids(WordTokenizer(), [" very good", " bad"])
    with pytest.raises(PromptingError, match="share a token"):
        prompting.label_word_ids(WordTokenizer(), [" good", " good"])


def test_calibration_divides_by_the_content_free_probabilities():
    probs = torch.tensor([[0.2, 0.8], [0.4, 0.6]])
    out = prompting.calibrated(probs, torch.tensor([[0.3, 0.7], [0.1, 0.9]]))  # averaged: (0.2, 0.8)
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5], [8 / 11, 3 / 11]]))
    torch.testing.assert_close(out.sum(1), torch.ones(2))


def test_a_soft_prompt_through_the_label_words_trains_alone_and_reproduces_its_text_at_step_0():
    lm = tiny_llama_lm()
    instruction, text = [40, 41, 42], [5, 6, 7]
    expected = next_token_logits(lm, instruction + text)
    prompt.apply(lm, prompt.PromptConfig(num_virtual_tokens=3, init="text", init_token_ids=tuple(instruction)))
    # the language model's head is its (tied) input embedding table: pretrained, so frozen, not a task head
    assert {n for n, p in lm.named_parameters() if p.requires_grad} == {"model.soft_prompt.weight"}
    model = LabelWordClassifier(lm, WORDS)
    ids, mask = left_padded([text])
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    before = lm.get_input_embeddings().weight.detach().clone()
    model(input_ids=ids, attention_mask=mask, labels=torch.tensor([1])).loss.backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    torch.testing.assert_close(lm.get_input_embeddings().weight, before, atol=0, rtol=0)
    assert not torch.equal(lm.model.soft_prompt.weight.detach(), before[instruction])


@pytest.mark.parametrize("make", [tiny_llama_lm, tiny_gpt2_lm], ids=["llama", "gpt2"])
def test_a_prefix_read_through_the_label_words_puts_the_text_after_it(make):
    """Prefix tuning (chapter 11) through LabelWordClassifier: the positions it passes, counted from each prompt's first
    real token, are shifted past the prefix, so each prompt scores as it does alone, positions taken from the cache."""
    lm = make()
    prefix.apply(lm, prefix.PrefixConfig(num_virtual_tokens=3))
    with torch.no_grad():
        lm.base_model.prefix_encoder.embedding.weight.normal_()  # a prefix that matters
    rows = [[5, 6, 7, 8], [9, 10]]
    ids, mask = left_padded(rows)
    with torch.no_grad():
        got = LabelWordClassifier(lm, WORDS)(input_ids=ids, attention_mask=mask).logits
    for row, r in zip(got, rows):
        torch.testing.assert_close(row, next_token_logits(lm, r), atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", [tiny_llama_lm, tiny_gpt2_lm], ids=["llama", "gpt2"])
def test_a_prefix_from_text_is_that_text_read_in_front(make):
    """Li & Liang's start (chapter 11): a prefix initialised with a text's keys and values gives, through the label
    words and left padding, the logits of reading the text in front of each prompt; it then trains alone."""
    lm = make()
    instruction, rows = [40, 41, 42, 43], [[5, 6, 7, 8], [9, 10]]
    expected = [next_token_logits(lm, instruction + r) for r in rows]
    alone = [next_token_logits(lm, r) for r in rows]
    prefix.apply(lm, prefix.PrefixConfig(num_virtual_tokens=len(instruction), init_token_ids=tuple(instruction)))
    assert {n for n, p in lm.named_parameters() if p.requires_grad} == {f"{lm.base_model_prefix}.prefix_encoder."
                                                                         "embedding.weight"}
    ids, mask = left_padded(rows)
    model = LabelWordClassifier(lm, WORDS)
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).logits
    for row, reference, without in zip(got, expected, alone):
        torch.testing.assert_close(row, reference, atol=1e-5, rtol=0)
        assert (row - without).abs().max() > 1e-3  # the instruction changes the answer, so the check can fail
    before = lm.base_model.prefix_encoder.embedding.weight.detach().clone()
    model(input_ids=ids, attention_mask=mask, labels=torch.tensor([1, 0])).loss.backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2).step()
    assert not torch.equal(lm.base_model.prefix_encoder.embedding.weight.detach(), before)


def test_a_prefix_refuses_a_cache_it_would_drop():
    """Cached demonstrations and a prefix both arrive as past_key_values: the prefix says so instead of replacing them."""
    lm = tiny_llama_lm()
    prefix.apply(lm, prefix.PrefixConfig(num_virtual_tokens=2))
    ids, mask = left_padded([[5, 6, 7]])
    with pytest.raises(TuningError, match="concatenate the two caches"):
        LabelWordClassifier(lm, WORDS, demonstrations=[30, 31])(input_ids=ids, attention_mask=mask)
