"""Prompt tuning (mtlib.tuning.prompt, chapter 10): the same logits as peft's PromptTuningConfig from the same
weights, before and after a step; the three initialisations; what trains and what is saved; clear errors."""
import copy

import pytest
import torch
from peft import PromptTuningConfig, get_peft_model

from mtlib.tuning import common, prompt
from mtlib.tuning.common import TuningError
import tiny_models
from tiny_models import HIDDEN, adamw_step, batch, logits, one_thread  # noqa: F401 (one_thread: autouse)

# peft calls a transformers property that transformers 5 renamed; the warning is theirs
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")


def padded_batch():
    """A batch whose second row is padded (on the left, as a decoder classifier given embeddings needs)."""
    inputs = batch()
    inputs["attention_mask"][1, :3] = 0
    return inputs


def ours_and_peft(make, n=5):
    """Our prompt tuning and peft's on two copies of one model, with peft's initial prompt copied into ours."""
    model = make()
    theirs = get_peft_model(copy.deepcopy(model), PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=n))
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=n))
    with torch.no_grad():
        model.base_model.soft_prompt.weight.copy_(theirs.prompt_encoder["default"].embedding.weight)
    return model, theirs


@pytest.mark.parametrize("make", [tiny_models.tiny_bert, tiny_models.tiny_llama], ids=["bert", "llama"])
def test_prompt_tuning_equals_peft_before_and_after_a_step(make):
    model, theirs = ours_and_peft(make)
    inputs = padded_batch()
    torch.testing.assert_close(logits(model, inputs), logits(theirs, inputs), atol=1e-5, rtol=0)
    ours_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert ours_trainable == sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    adamw_step(model, inputs)
    adamw_step(theirs, inputs)
    torch.testing.assert_close(logits(model, inputs), logits(theirs, inputs), atol=1e-5, rtol=0)


def test_the_prompt_changes_the_output_and_masking_keeps_padding_out():
    model = tiny_models.tiny_bert()
    inputs = batch()
    before = logits(model, inputs)
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=3))
    assert not torch.allclose(logits(model, inputs), before)  # unlike LoRA, a prompt acts from step 0
    # the same sentence, padded on the right, gives the same prediction: the extended mask still hides the padding
    one = {k: v[:1] for k, v in inputs.items()}
    padded = {"input_ids": torch.cat([one["input_ids"], torch.zeros(1, 2, dtype=torch.long)], 1),
              "attention_mask": torch.cat([one["attention_mask"], torch.zeros(1, 2, dtype=torch.long)], 1)}
    torch.testing.assert_close(logits(model, one), logits(model, padded), atol=1e-5, rtol=0)


def test_only_the_prompt_and_the_head_train_and_save_and_load_restore_them(tmp_path):
    model = tiny_models.tiny_bert()
    report = prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=4))
    assert report["added parameters"] == 4 * HIDDEN
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"bert.soft_prompt.weight", "classifier.weight", "classifier.bias"}
    adamw_step(model, batch())
    size = common.save(model, tmp_path / "prompt.safetensors")
    fresh = tiny_models.tiny_bert()  # the same frozen weights, as a reloaded checkpoint has
    prompt.apply(fresh, prompt.PromptConfig(num_virtual_tokens=4))
    common.load(fresh, tmp_path / "prompt.safetensors")
    torch.testing.assert_close(logits(fresh, batch()), logits(model, batch()), atol=0, rtol=0)
    assert size < 4 * (4 * HIDDEN + HIDDEN * 2 + 2) + 1024  # the prompt and the head, and a small header


def test_the_three_initialisations():
    table = tiny_models.tiny_bert().get_input_embeddings().weight
    text = tiny_models.tiny_bert()
    prompt.apply(text, prompt.PromptConfig(num_virtual_tokens=5, init="text", init_token_ids=(7, 8)))
    torch.testing.assert_close(text.bert.soft_prompt.weight.detach(), table[[7, 8, 7, 8, 7]])  # repeated, then cut
    vocab = tiny_models.tiny_bert()
    prompt.apply(vocab, prompt.PromptConfig(num_virtual_tokens=5, init="vocab"))
    rows = vocab.bert.soft_prompt.weight.detach()
    assert all(any(torch.equal(row, entry) for entry in table) for row in rows)  # every row is a vocabulary entry
    random = tiny_models.tiny_bert()
    prompt.apply(random, prompt.PromptConfig(num_virtual_tokens=24))
    assert 0.7 < random.bert.soft_prompt.weight.std().item() < 1.3  # standard normal, as peft's RANDOM


def test_a_right_padded_batch_on_a_decoder_is_refused():
    model = tiny_models.tiny_llama()
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=2))
    right = batch()
    right["attention_mask"][1, -2:] = 0
    with pytest.raises(TuningError, match="padding_side = 'left'"):
        logits(model, right)
    logits(model, padded_batch())  # padded on the left: accepted


def test_bad_input_gives_clear_errors():
    with pytest.raises(TuningError, match="at least 1 virtual token"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(num_virtual_tokens=0))
    with pytest.raises(TuningError, match="whole context of 512"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(num_virtual_tokens=512))
    with pytest.raises(TuningError, match="init_token_ids"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(init="text"))
    with pytest.raises(TuningError, match="beyond the vocabulary"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(init="text", init_token_ids=(5, 1000)))
    with pytest.raises(TuningError, match="Unknown prompt initialisation"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(init="zeros"))
    model = tiny_models.tiny_bert()
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=2))
    with pytest.raises(TuningError, match="already applied"):
        prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=2))


def test_a_prompt_after_the_first_token_keeps_cls_and_the_positions():
    """Chapter 10's control: with the prompt after [CLS] and masked out, the encoder computes exactly what it computes
    without a prompt (the text keeps its positions); unmasked, the prompt acts; a decoder is refused."""
    plain, model = tiny_models.tiny_bert(), tiny_models.tiny_bert()
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=3), where="after_first")
    inputs = batch()
    seen = {}
    model.bert.embeddings.register_forward_hook(lambda module, args, kwargs, out: seen.update(kwargs),
                                                with_kwargs=True)
    acting = logits(model, inputs)
    assert seen["position_ids"][0].tolist() == [0, 0, 0, 0, *range(1, inputs["input_ids"].shape[1])]
    assert not torch.allclose(acting, logits(plain, inputs))  # the prompt acts from step 0

    def masked(module, args, kwargs):  # after the prompt's hook: hide the prompt's three positions again
        kwargs["attention_mask"][:, 1:4] = 0
        return args, kwargs

    model.register_forward_pre_hook(masked, with_kwargs=True)
    torch.testing.assert_close(logits(model, inputs), logits(plain, inputs), atol=1e-5, rtol=0)
    with pytest.raises(TuningError, match="where='front'"):
        prompt.apply(tiny_models.tiny_llama(), prompt.PromptConfig(num_virtual_tokens=2), where="after_first")
    with pytest.raises(TuningError, match="'front' or 'after_first'"):
        prompt.apply(tiny_models.tiny_bert(), prompt.PromptConfig(num_virtual_tokens=2), where="middle")
