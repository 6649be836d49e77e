"""mtlib.tuning DoRA (lora.LoraConfig(use_dora=True)) and adapters: both leave the model unchanged at step 0, DoRA
equals peft's before and after a step and merges exactly, adapters train only themselves and the head, save and load,
and fail clearly on bad input. Tiny models built from configs."""
import copy

import pytest
import torch
from transformers import GPT2ForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

from mtlib import freeze, params
from mtlib.tuning import adapters, common, lora
from tiny_models import (HIDDEN, LAYERS, adamw_step, batch, logits, one_thread,  # noqa: F401
                         tiny_bert, tiny_distilbert, tiny_gpt2, tiny_llama)



def tiny_roberta(seed=0):  # BERT's layer names, but a model type that adapters has no entry for
    torch.manual_seed(seed)
    config = RobertaConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
                           intermediate_size=64, num_labels=2, max_position_embeddings=40, pad_token_id=0,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return RobertaForSequenceClassification(config).eval()


ALL = [tiny_bert, tiny_distilbert, tiny_gpt2, tiny_llama]






# ------------------------------------------------------------------------------------------------ DoRA
DORA_TARGETS = [(tiny_bert, ("query", "value")), (tiny_gpt2, ("c_attn", "c_fc")), (tiny_llama, ("q_proj", "down_proj"))]


@pytest.mark.parametrize("make, targets", DORA_TARGETS)
def test_dora_step_zero_leaves_the_outputs_unchanged(make, targets):
    model = make()
    before = logits(model, batch())
    report = lora.apply(model, lora.LoraConfig(r=4, target_modules=targets, use_dora=True))
    assert (logits(model, batch()) - before).abs().max() <= 1e-6
    magnitudes = [n for n, p in model.named_parameters() if n.endswith("lora_magnitude")]
    assert len(magnitudes) == 2 * LAYERS
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(magnitudes) <= trainable
    assert report["technique"] == "dora"
    assert report["added parameters"] == sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)


def dora_twin(model, targets, head):
    """A peft DoRA model on a copy of `model`, and ours with peft's A and (made non-zero) B copied in."""
    peft = pytest.importorskip("peft", minversion="0.9.0", reason="peft's LoraConfig(use_dora=True) came in 0.9")
    transposed = isinstance(model, GPT2ForSequenceClassification)  # Conv1D: peft needs fan_in_fan_out=True
    theirs = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(targets), use_dora=True, fan_in_fan_out=transposed,
        modules_to_save=[head]))
    ours = copy.deepcopy(model)
    lora.apply(ours, lora.LoraConfig(r=4, alpha=8, target_modules=targets, use_dora=True))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, module in ours.named_modules():
            if isinstance(module, lora.DoraLinear):
                twin = theirs.base_model.model.get_submodule(name)
                B = twin.lora_B["default"].weight
                B.copy_(torch.randn(B.shape, generator=g) * 0.1)  # a non-zero update: the norm is no longer ||W||
                module.lora_A.copy_(twin.lora_A["default"].weight)
                module.lora_B.copy_(B)
    return ours, theirs


@pytest.mark.parametrize("make, targets, head", [(tiny_bert, ("query", "value"), "classifier"),
                                                 (tiny_gpt2, ("c_attn", "c_fc"), "score")])
def test_dora_equals_peft_before_and_after_a_step(make, targets, head):
    ours, theirs = dora_twin(make(), targets, head)
    inputs = batch()
    assert not torch.allclose(logits(ours, inputs), logits(make(), inputs), atol=1e-4)  # B is not zero
    assert (logits(ours, inputs) - logits(theirs, inputs)).abs().max() <= 1e-5
    assert params.count_parameters(ours)["trainable"] == theirs.get_nb_trainable_parameters()[0]
    before = logits(ours, inputs)
    for model in (ours, theirs):
        adamw_step(model, inputs)
    after = logits(ours, inputs)
    assert not torch.allclose(after, before, atol=1e-4)  # the step changed something
    assert (after - logits(theirs, inputs)).abs().max() <= 1e-5


@pytest.mark.parametrize("make, targets", DORA_TARGETS)
def test_dora_merge_gives_the_same_outputs_and_unmerge_restores(make, targets):
    model = make()
    lora.apply(model, lora.LoraConfig(r=4, target_modules=targets, use_dora=True))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, lora.DoraLinear):
                module.lora_B.normal_()  # a non-zero update and changed magnitudes, as after training
                module.lora_magnitude.mul_(1 + 0.1 * torch.randn_like(module.lora_magnitude))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith("base.weight")}
    inputs = batch()
    unmerged = logits(model, inputs)
    lora.merge(model)
    assert (logits(model, inputs) - unmerged).abs().max() <= 1e-5
    assert any(not torch.allclose(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    lora.unmerge(model)
    assert (logits(model, inputs) - unmerged).abs().max() <= 1e-5
    assert all(torch.allclose(p, frozen[n], atol=1e-5) for n, p in model.named_parameters() if n in frozen)


# ------------------------------------------------------------------------------------------------ adapters
@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("placement", ["houlsby", "pfeiffer"])
def test_adapters_step_zero_leaves_the_outputs_unchanged(make, placement):
    model = make()
    before = logits(model, batch())
    report = adapters.apply(model, adapters.AdapterConfig(bottleneck=8, placement=placement))
    assert (logits(model, batch()) - before).abs().max() <= 1e-6
    assert report["technique"] == "adapters" and report["placement"] == placement
    assert len(report["layers"]) == LAYERS * (2 if placement == "houlsby" else 1)


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("placement, per_block", [("houlsby", 2), ("pfeiffer", 1)])
def test_adapters_and_the_head_train_alone(make, placement, per_block):
    model = make()
    b = 8
    report = adapters.apply(model, adapters.AdapterConfig(bottleneck=b, placement=placement))
    added = {n for n, _ in model.named_parameters() if ".adapter." in n}
    assert sum(p.numel() for n, p in model.named_parameters() if n in added) == \
        per_block * LAYERS * (2 * HIDDEN * b + b + HIDDEN) == report["added parameters"]
    head = set(freeze.trainable(model)) - added
    assert head and all(n.startswith(("classifier.", "pre_classifier.", "score.")) for n in head)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    old = logits(model, batch())
    adamw_step(model, batch())
    assert not torch.allclose(logits(model, batch()), old, atol=1e-5)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved <= added | head and any(n.endswith("adapter.up.weight") for n in moved)


def test_adapters_houlsby_sits_on_the_sublayer_outputs_before_the_residual():
    model = tiny_bert()
    report = adapters.apply(model, adapters.AdapterConfig(bottleneck=4))
    assert report["layers"] == ["bert.encoder.layer.0.attention.output.dense", "bert.encoder.layer.0.output.dense",
                                "bert.encoder.layer.1.attention.output.dense", "bert.encoder.layer.1.output.dense"]
    block = model.bert.encoder.layer[0]
    assert isinstance(block.output.dense, adapters.WithAdapter)  # the FFN out, not attention.output.dense twice
    assert isinstance(block.output.LayerNorm, torch.nn.LayerNorm)  # the residual add and LayerNorm come after


def test_adapters_can_train_the_layer_norms_too():
    model = tiny_llama()
    adapters.apply(model, adapters.AdapterConfig(bottleneck=4, placement="pfeiffer", train_layer_norms=True))
    trainable = set(freeze.trainable(model))
    norms = {n for n, _ in model.named_parameters() if "norm" in n}  # input_layernorm, post_attention_layernorm, norm
    assert norms and norms <= trainable
    assert all(".adapter." in n or n.startswith("score.") for n in trainable - norms)


@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2])
def test_adapters_save_and_load_restore_the_same_logits_head_included(make, tmp_path):
    config = adapters.AdapterConfig(bottleneck=8)
    model = make()
    adapters.apply(model, config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)  # the adapters and the head move, as in training
    size = common.save(model, tmp_path / "adapters.safetensors")
    fresh = make()
    adapters.apply(fresh, config)
    assert not torch.equal(logits(fresh, batch()), logits(model, batch()))
    common.load(fresh, tmp_path / "adapters.safetensors")
    assert torch.equal(logits(fresh, batch()), logits(model, batch()))
    saved = params.count_parameters(model)["trainable"]
    assert saved * 4 <= size < saved * 4 + 4096  # float32 weights and a small header: nothing else is saved


def test_adapters_take_explicit_layer_names_for_other_model_types():
    model = tiny_roberta()
    before = logits(model, batch())
    report = adapters.apply(model, adapters.AdapterConfig(bottleneck=4, attention_output="attention.output.dense",
                                                          ffn_output="output.dense"))
    assert len(report["layers"]) == 2 * LAYERS
    assert (logits(model, batch()) - before).abs().max() <= 1e-6


def test_adapters_bad_input_gives_clear_errors():
    with pytest.raises(common.TuningError, match="bottleneck must be a whole number of at least 1, got 0"):
        adapters.apply(tiny_bert(), adapters.AdapterConfig(bottleneck=0))
    with pytest.raises(common.TuningError, match="Unknown adapter placement 'middle': choose 'houlsby'"):
        adapters.apply(tiny_bert(), adapters.AdapterConfig(placement="middle"))
    with pytest.raises(common.TuningError, match="Unknown activation 'swish'"):
        adapters.apply(tiny_bert(), adapters.AdapterConfig(activation="swish"))
    model = tiny_bert()
    adapters.apply(model)
    with pytest.raises(common.TuningError, match="adapters is already applied"):
        adapters.apply(model)
    with pytest.raises(common.TuningError, match="not in model type 'roberta': name the output layers"):
        adapters.apply(tiny_roberta())
    model = tiny_bert()
    with pytest.raises(common.TuningError, match="output.LayerNorm is a LayerNorm, not a linear layer.*query"):
        adapters.apply(model, adapters.AdapterConfig(ffn_output="output.LayerNorm"))
    assert not any(isinstance(m, adapters.WithAdapter) for m in model.modules())  # left as it was
    with pytest.raises(common.TuningError, match="ffn.lin9 is missing"):
        adapters.apply(tiny_distilbert(), adapters.AdapterConfig(ffn_output="ffn.lin9"))
