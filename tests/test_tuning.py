"""mtlib.tuning: LoRA leaves the model unchanged at step 0, equals peft before and after a step, merges exactly,
saves and loads only its weights and the head, and fails clearly on bad input. Tiny models built from configs."""
import copy

import pytest
import torch
from peft import LoraConfig as PeftLoraConfig, get_peft_model

from mtlib import params
from mtlib.tuning import TECHNIQUES, bitfit, common, lora
from tiny_models import batch, logits, one_thread, tiny_bert, tiny_gpt2  # noqa: F401 (one_thread: autouse)



@pytest.mark.parametrize("make, targets", [(tiny_bert, ("query", "value")), (tiny_gpt2, ("c_attn",))])
def test_step_zero_leaves_the_outputs_unchanged(make, targets):
    model = make()
    before = logits(model, batch())
    report = lora.apply(model, lora.LoraConfig(r=4, target_modules=targets))
    assert (logits(model, batch()) - before).abs().max() <= 1e-6
    assert report["added parameters"] == sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)


def test_only_lora_and_the_head_train():
    model = tiny_bert()
    lora.apply(model, lora.LoraConfig(r=4))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if ".lora_" in n or n.startswith("classifier.")}
    assert len([n for n in trainable if n.endswith("lora_A")]) == 4  # query and value in each of 2 blocks


def peft_twin(model, r, alpha, targets):
    """A peft LoRA model on a copy of `model`, and ours with peft's random A copied in (B is zero in both)."""
    theirs = get_peft_model(copy.deepcopy(model), PeftLoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0,
                                                                 target_modules=list(targets),
                                                                 modules_to_save=["classifier"]))
    ours = copy.deepcopy(model)
    lora.apply(ours, lora.LoraConfig(r=r, alpha=alpha, target_modules=targets))
    for name, module in ours.named_modules():
        if isinstance(module, lora.LoraLinear):
            module.lora_A.data.copy_(theirs.base_model.model.get_submodule(name).lora_A["default"].weight)
    return ours, theirs


def test_lora_equals_peft_before_and_after_a_step():
    ours, theirs = peft_twin(tiny_bert(), r=4, alpha=8, targets=("query", "value"))
    inputs = batch()
    assert torch.allclose(logits(ours, inputs), logits(theirs, inputs), atol=1e-5)
    assert params.count_parameters(ours)["trainable"] == theirs.get_nb_trainable_parameters()[0]
    for model in (ours, theirs):  # one AdamW step on the same batch
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
        model.train()
        model(**inputs).loss.backward()
        optimizer.step()
        model.eval()
    after = logits(ours, inputs)
    assert not torch.allclose(after, logits(tiny_bert(), inputs), atol=1e-4)  # the step changed something
    assert torch.allclose(after, logits(theirs, inputs), atol=1e-5)


@pytest.mark.parametrize("make, targets", [(tiny_bert, ("query", "value", "dense")), (tiny_gpt2, ("c_attn", "c_fc"))])
def test_merge_gives_the_same_outputs_without_extra_work(make, targets):
    model = make()
    lora.apply(model, lora.LoraConfig(r=4, target_modules=targets))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, lora.LoraLinear):
                module.lora_B.normal_()  # a non-zero update, as after training
    inputs = batch()
    unmerged = logits(model, inputs)
    lora.merge(model)
    assert (logits(model, inputs) - unmerged).abs().max() <= 1e-5
    lora.unmerge(model)
    assert (logits(model, inputs) - unmerged).abs().max() <= 1e-5


def test_save_and_load_restore_the_same_logits_head_included(tmp_path):
    model = tiny_bert()
    lora.apply(model, lora.LoraConfig(r=4))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # the LoRA matrices and the head move, as in training
    size = common.save(model, tmp_path / "lora.safetensors")
    fresh = tiny_bert()
    lora.apply(fresh, lora.LoraConfig(r=4))
    common.load(fresh, tmp_path / "lora.safetensors")
    assert torch.equal(logits(fresh, batch()), logits(model, batch()))
    saved = params.count_parameters(model)["trainable"]
    assert saved * 4 <= size < saved * 4 + 4096  # float32 weights and a small header: nothing else is saved


def test_bad_input_gives_clear_errors():
    with pytest.raises(common.TuningError, match="No module of BertForSequenceClassification is named.*query"):
        lora.apply(tiny_bert(), lora.LoraConfig(target_modules=("q_proj",)))
    with pytest.raises(common.TuningError, match="rank r must be .* at least 1, got r=0"):
        lora.apply(tiny_bert(), lora.LoraConfig(r=0))
    model = tiny_bert()
    lora.apply(model)
    with pytest.raises(common.TuningError, match="lora is already applied"):
        lora.apply(model)
    with pytest.raises(common.TuningError, match="LayerNorm, which this technique cannot wrap"):
        lora.apply(tiny_bert(), lora.LoraConfig(target_modules=("LayerNorm",)))


def test_the_registry_lists_every_technique_in_chapter_order():
    from mtlib.tuning import adapters, layerwise, prefix, prompt
    assert list(TECHNIQUES.items()) == [("layerwise", layerwise), ("bitfit", bitfit), ("adapters", adapters),
                                        ("lora", lora), ("prompt", prompt), ("prefix", prefix)]
    assert all(callable(module.apply) for module in TECHNIQUES.values())


def test_bitfit_trains_the_biases_and_the_whole_head():
    model = tiny_bert()
    report = bitfit.apply(model)
    biases = [p for n, p in model.named_parameters() if n.endswith(".bias") and not n.startswith("classifier.")]
    head = sum(p.numel() for p in model.classifier.parameters())
    assert params.count_parameters(model)["trainable"] == sum(p.numel() for p in biases) + head
    assert model.classifier.weight.requires_grad  # a loop often seen in tutorials freezes the new head's weight
    assert report["biases"] == len(bitfit.bias_names(model)) and report["added parameters"] == 0
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**batch()).loss.backward()
    optimizer.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.endswith(".bias") or n.startswith("classifier.") for n in moved)


def test_bitfit_errors():
    model = tiny_bert()
    bitfit.apply(model)
    with pytest.raises(common.TuningError, match="bitfit is already applied"):
        bitfit.apply(model)
