"""Prefix tuning and P-tuning v2 (mtlib.tuning.prefix, chapter 11): the same logits as peft's PrefixTuningConfig from
the same weights, before and after a step, with and without the reparameterisation, on an encoder and on decoders
(GPT-2, and Llama with grouped-query attention); what trains and what is saved; clear errors."""
import copy

import pytest
import torch
from peft import PrefixTuningConfig, get_peft_model

from mtlib.tuning import common, prefix
from mtlib.tuning.common import TuningError
import tiny_models
from tiny_models import HIDDEN, LAYERS, adamw_step, batch, logits, one_thread  # noqa: F401 (one_thread: autouse)

# peft calls a transformers property that transformers 5 renamed; the warning is theirs
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

MODELS = [tiny_models.tiny_bert, tiny_models.tiny_gpt2, tiny_models.tiny_llama]


def padded_batch():
    """A batch whose second row is padded on the right."""
    inputs = batch()
    inputs["attention_mask"][1, -3:] = 0
    inputs["input_ids"][1, -3:] = 0
    return inputs


def ours_and_peft(make, n=4, projection=False):
    """Our prefix tuning and peft's on two copies of one model, with peft's initial prefix weights copied into ours."""
    model = make()
    theirs = get_peft_model(copy.deepcopy(model), PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=n,
                                                                     prefix_projection=projection))
    prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=n, projection=projection))
    ours, peft_encoder = model.base_model.prefix_encoder, theirs.prompt_encoder["default"]
    ours.load_state_dict({k: v for k, v in peft_encoder.state_dict().items()})
    return model, theirs


@pytest.mark.parametrize("projection", [False, True], ids=["direct", "mlp"])
@pytest.mark.parametrize("make", MODELS, ids=["bert", "gpt2", "llama"])
def test_prefix_tuning_equals_peft_before_and_after_a_step(make, projection):
    model, theirs = ours_and_peft(make, projection=projection)
    inputs = padded_batch()
    torch.testing.assert_close(logits(model, inputs), logits(theirs, inputs), atol=1e-5, rtol=0)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == \
        sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    adamw_step(model, inputs)
    adamw_step(theirs, inputs)
    torch.testing.assert_close(logits(model, inputs), logits(theirs, inputs), atol=1e-5, rtol=0)


def test_the_prefix_has_one_key_and_value_per_layer_and_only_it_and_the_head_train(tmp_path):
    model = tiny_models.tiny_bert()
    report = prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=3))
    assert report["added parameters"] == 3 * LAYERS * 2 * HIDDEN
    cache = model.base_model.prefix_encoder.cache(batch_size=2, dtype=torch.float32)
    assert len(cache.layers) == LAYERS and cache.get_seq_length() == 3
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {"bert.prefix_encoder.embedding.weight", "classifier.weight", "classifier.bias"}
    adamw_step(model, batch())
    common.save(model, tmp_path / "prefix.safetensors")
    fresh = tiny_models.tiny_bert()  # the same frozen weights, as a reloaded checkpoint has
    prefix.apply(fresh, prefix.PrefixConfig(num_virtual_tokens=3))
    common.load(fresh, tmp_path / "prefix.safetensors")
    torch.testing.assert_close(logits(fresh, batch()), logits(model, batch()), atol=0, rtol=0)


def test_grouped_query_attention_gets_prefixes_of_its_key_value_heads():
    model = tiny_models.tiny_llama()  # 4 attention heads sharing 2 key/value heads
    prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=3))
    keys = model.base_model.prefix_encoder.cache(batch_size=1, dtype=torch.float32).layers[0].keys
    assert keys.shape == (1, 2, 3, HIDDEN // 4)


def test_bad_input_gives_clear_errors():
    with pytest.raises(TuningError, match="at least 1 virtual token"):
        prefix.apply(tiny_models.tiny_bert(), prefix.PrefixConfig(num_virtual_tokens=0))
    with pytest.raises(TuningError, match="whole context of 32"):
        prefix.apply(tiny_models.tiny_gpt2(), prefix.PrefixConfig(num_virtual_tokens=32))
    with pytest.raises(TuningError, match="takes no past_key_values"):
        prefix.apply(tiny_models.tiny_distilbert(), prefix.PrefixConfig(num_virtual_tokens=2))
    model = tiny_models.tiny_bert()
    prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=2))
    with pytest.raises(TuningError, match="already applied"):
        prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=2))


def test_a_prefix_from_text_needs_a_causal_model_and_one_token_per_virtual_token():
    with pytest.raises(TuningError, match="needs a causal language model"):
        prefix.apply(tiny_models.tiny_bert(), prefix.PrefixConfig(num_virtual_tokens=2, init_token_ids=(5, 6)))
    with pytest.raises(TuningError, match="one virtual token per token"):
        prefix.apply(tiny_models.tiny_gpt2(), prefix.PrefixConfig(num_virtual_tokens=3, init_token_ids=(5, 6)))
    with pytest.raises(TuningError, match="one virtual token per token"):
        prefix.apply(tiny_models.tiny_gpt2(), prefix.PrefixConfig(num_virtual_tokens=2, projection=True,
                                                                 init_token_ids=(5, 6)))


def test_the_decoder_setting_trains_a_prefix_through_the_label_words_and_reports_every_column():
    """`task.LabelWordTask` (chapters 10 and 11) on a tiny random Llama with the decoder's real tokenizer."""
    import mtlib
    from mtlib import zoo
    from mtlib.tuning import task
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = mtlib.setup(profile="smoke", verbose=False)
    tokenizer = zoo.load_tokenizer("decoder", cfg)
    torch.manual_seed(0)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=64,
                                      num_hidden_layers=LAYERS, num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=True)).eval()
    tokenizer.padding_side = "right"
    with pytest.raises(ValueError, match="padding_side = 'left'"):
        task.LabelWordTask(cfg, lm, tokenizer)
    tokenizer.padding_side = "left"
    setting = task.LabelWordTask(cfg, lm, tokenizer)
    assert [len(setting.ds[s]) for s in ("train", "validation", "test")] == [8, 8, 16]
    assert setting.ds["test"][0]["text"].startswith("Review: ") and setting.ds["test"][0]["text"].endswith("Sentiment:")
    before = lm.model.embed_tokens.weight.detach().clone()
    run = setting.run("prefix", lambda m: prefix.apply(m, prefix.PrefixConfig(num_virtual_tokens=2)), lr=1e-2)
    assert run.trainable == 2 * LAYERS * 2 * HIDDEN // 2  # keys and values of the 2 key/value heads (of 4)
    assert len(run.history.steps) == setting.steps == 1 and 0 <= run.val_accuracy <= 1
    assert run.test_correct.shape == (16,) and run.saved_bytes > 4 * run.trainable
    assert torch.equal(lm.model.embed_tokens.weight, before) and not hasattr(lm.model, "prefix_encoder")  # a copy trained


@pytest.mark.parametrize("make", [tiny_models.tiny_gpt2, tiny_models.tiny_llama], ids=["gpt2", "llama"])
def test_a_prefix_from_text_holds_what_peft_loads_from_the_same_cache(make):
    """peft (0.19 on) initialises a prefix from a text's cache too: the two prefix matrices are equal."""
    utils = pytest.importorskip("peft.tuners.cartridge.utils", reason="peft before 0.19 has no prefix from text")
    text = (40, 41, 42)
    model = make()
    theirs = get_peft_model(copy.deepcopy(model), PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3))
    with torch.no_grad():
        cache = model.base_model(input_ids=torch.tensor([text]), use_cache=True).past_key_values
    expected = utils.initialize_kv_prefix_from_past_key_values(theirs, past_key_values=cache)
    prefix.apply(model, prefix.PrefixConfig(num_virtual_tokens=3, init_token_ids=text))
    torch.testing.assert_close(model.base_model.prefix_encoder.embedding.weight, expected.float(), atol=0, rtol=0)
    torch.testing.assert_close(logits(model, batch()), logits(theirs, batch()), atol=1e-5, rtol=0)
