"""mtlib.freeze: freezing by name, and the finders for the last block, the final norm and the head.

Tiny models built from configs cover several architectures (Llama, GPT-2, OPT, BERT, DistilBERT); one test uses the
real offline decoder. After `train_only`, exactly the named parameters require gradients, and an optimiser step
changes those and nothing else.
"""
import pytest
import torch
from torch import nn
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification,
                          GPT2LMHeadModel, LlamaConfig, LlamaForSequenceClassification, LlamaModel, OPTConfig,
                          OPTForSequenceClassification)

from mtlib import freeze, params, zoo
from mtlib.freeze import FreezeError
from mtlib.runtime import Config

SMALL = dict(vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def llama(layers=12, head=True):
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=layers, num_attention_heads=2,
                         num_key_value_heads=1, num_labels=2, **SMALL)
    return LlamaForSequenceClassification(config) if head else LlamaModel(config)


def gpt2(lm=False):
    config = GPT2Config(n_embd=16, n_layer=3, n_head=2, n_positions=32, num_labels=2, **SMALL)
    return GPT2LMHeadModel(config) if lm else GPT2ForSequenceClassification(config)


def opt():
    return OPTForSequenceClassification(OPTConfig(hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                                                  word_embed_proj_dim=16, num_labels=2, **SMALL))


def bert():
    return BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                    num_hidden_layers=2, num_attention_heads=2, num_labels=2))


def distilbert():
    return DistilBertForSequenceClassification(DistilBertConfig(vocab_size=64, dim=16, hidden_dim=32, n_layers=2,
                                                                n_heads=2, num_labels=2))


class Wrapper(nn.Module):
    """A chapter-style classifier: a backbone and a score layer, no `config` of its own."""

    def __init__(self):
        super().__init__()
        self.backbone = llama(layers=3, head=False)
        self.head = nn.Linear(16, 2, bias=False)

    def forward(self, input_ids, attention_mask):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, -1])


# (factory, last block, final norm or None, head)
CASES = {
    "llama": (llama, "model.layers.11", "model.norm", ["score"]),
    "gpt2": (gpt2, "transformer.h.2", "transformer.ln_f", ["score"]),
    "gpt2-lm": (lambda: gpt2(lm=True), "transformer.h.2", "transformer.ln_f", ["lm_head"]),
    "opt": (opt, "model.decoder.layers.1", "model.decoder.final_layer_norm", ["score"]),
    "bert": (bert, "bert.encoder.layer.1", None, ["classifier"]),
    "distilbert": (distilbert, "distilbert.transformer.layer.1", None, ["pre_classifier", "classifier"]),
    "wrapper": (Wrapper, "backbone.layers.2", "backbone.norm", ["head"]),
}


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------------------ finders
@pytest.mark.parametrize("arch", list(CASES))
def test_finders(arch):
    factory, block, norm, head = CASES[arch]
    model = factory()
    assert freeze.last_block(model) == block
    assert model.get_submodule(block) is zoo.transformer_layers(model.backbone if arch == "wrapper" else model)[-1]
    assert freeze.head(model) == head
    if norm is None:
        with pytest.raises(FreezeError, match="no norm after its block stack"):
            freeze.final_norm(model)
    else:
        assert freeze.final_norm(model) == norm


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt", "wrapper"])
@torch.no_grad()
def test_final_norm_is_the_last_thing_the_backbone_applies(arch):
    """The finder's norm is the module whose output the backbone returns as its last hidden state."""
    model = CASES[arch][0]().eval()
    seen = {}
    model.get_submodule(freeze.final_norm(model)).register_forward_hook(lambda m, i, o: seen.update(out=o))
    base = model.get_submodule(freeze.backbone(model))
    ids = torch.tensor([[3, 4, 5, 6]])
    hidden = base(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    torch.testing.assert_close(seen["out"], hidden)


def test_backbone_without_head_has_no_head():
    model = llama(layers=2, head=False)
    assert freeze.backbone(model) == ""
    assert freeze.last_block(model) == "layers.1" and freeze.final_norm(model) == "norm"
    with pytest.raises(FreezeError, match="without a head"):
        freeze.head(model)


def test_finders_follow_a_model_cut_to_fewer_layers():
    model = zoo.keep_layers(llama(layers=6), [0, 5])
    assert freeze.last_block(model) == "model.layers.1"


# ------------------------------------------------------------------------------------------------ by name
def test_matches_prefixes_at_dots_and_globs():
    assert freeze.matches("model.layers.1.mlp.up_proj.weight", "model.layers.1")
    assert not freeze.matches("model.layers.10.mlp.up_proj.weight", "model.layers.1")
    assert freeze.matches("model.norm.weight", "model.norm.weight")
    assert freeze.matches("model.layers.3.input_layernorm.weight", "*layernorm*")
    assert not freeze.matches("model.norm.weight", "model.no")


def test_train_only_leaves_exactly_the_named_parameters_trainable():
    model = llama(layers=12)
    block, norm, head = freeze.last_block(model), freeze.final_norm(model), freeze.head(model)
    names = freeze.train_only(model, block, norm, *head)
    expected = [n for n, _ in model.named_parameters() if n.startswith(("model.layers.11.", "model.norm.", "score."))]
    assert names == expected == freeze.trainable(model)
    assert not any(n.startswith("model.layers.1.") for n in names)  # layer 1 is not layer 11
    sizes = sum(sum(p.numel() for p in model.get_submodule(m).parameters()) for m in [block, norm, *head])
    counts = params.count_parameters(model)
    assert counts["trainable"] == sizes < counts["total"]
    report = params.parameter_report(model, depth=2)
    assert report.loc["model.embed_tokens", "trainable"] == 0
    assert report.loc["score.weight", "trainable %"] == 100.0


def test_train_only_accepts_lists_and_globs():
    model = llama(layers=3)
    names = freeze.train_only(model, ["score"], "*.input_layernorm.*")
    assert names == ["model.layers.0.input_layernorm.weight", "model.layers.1.input_layernorm.weight",
                     "model.layers.2.input_layernorm.weight", "score.weight"]


def test_train_only_refreezes_what_was_trainable_before():
    model = gpt2()
    freeze.train_only(model, "transformer.h.0")
    assert freeze.train_only(model, "score") == ["score.weight"]


def test_freeze_all_and_unfreeze():
    model = gpt2()
    freeze.freeze_all(model)
    assert freeze.trainable(model) == [] and params.count_parameters(model)["trainable"] == 0
    assert freeze.unfreeze(model, "transformer.ln_f") == ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    assert freeze.trainable(model) == ["transformer.ln_f.weight", "transformer.ln_f.bias"]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "opt"])
def test_an_optimiser_step_changes_only_the_trainable_parameters(arch):
    model = CASES[arch][0]()
    model.train()
    trainable = set(freeze.train_only(model, freeze.last_block(model), freeze.final_norm(model),
                                      *freeze.head(model)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # AdamW over ALL parameters, weight decay on: the frozen ones get no gradient, so they must not move either
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]])
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=torch.tensor([0, 1])).loss
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable
    assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)


def test_an_optimiser_built_before_unfreezing_never_updates_the_unfrozen_block():
    """The pitfall: the optimiser holds the parameters it was given; unfreezing later does not add any."""
    model = llama(layers=2)
    freeze.train_only(model, "score")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    freeze.unfreeze(model, freeze.last_block(model))
    before = model.get_submodule(freeze.last_block(model)).mlp.up_proj.weight.detach().clone()
    ids = torch.tensor([[3, 4, 5]])
    model(input_ids=ids, labels=torch.tensor([1])).loss.backward()
    optimizer.step()
    block = model.get_submodule(freeze.last_block(model))
    assert block.mlp.up_proj.weight.grad is not None  # it gets a gradient ...
    assert torch.equal(block.mlp.up_proj.weight, before)  # ... but no update


def test_tied_weights_unfreeze_together():
    model = gpt2(lm=True)
    names = freeze.train_only(model, "lm_head")
    assert model.transformer.wte.weight.requires_grad and model.transformer.wte.weight is model.lm_head.weight
    assert names == ["transformer.wte.weight"]  # one tensor, listed once under its first name


# ------------------------------------------------------------------------------------------------ errors
def test_a_pattern_that_matches_nothing_lists_real_names():
    model = llama(layers=12)
    with pytest.raises(FreezeError) as err:
        freeze.train_only(model, "transformer.h.11", "score")  # GPT-2's name on a Llama model
    message = str(err.value)
    assert "'transformer.h.11' matches no parameter of LlamaForSequenceClassification" in message
    for real in ("model.embed_tokens", "model.layers.0", "model.layers.11", "model.norm", "score"):
        assert real in message
    assert "model.layers.5," not in message  # the middle blocks are elided


def test_a_failed_pattern_changes_nothing():
    model = gpt2()
    with pytest.raises(FreezeError):
        freeze.train_only(model, "score", "transformer.layers.2")
    assert all(p.requires_grad for p in model.parameters())  # not frozen halfway
    freeze.freeze_all(model)
    with pytest.raises(FreezeError):
        freeze.unfreeze(model, "score", "transformer.layers.2")
    assert freeze.trainable(model) == []


@pytest.mark.parametrize("bad", [[], [3], [None]])
def test_bad_patterns(bad):
    with pytest.raises(FreezeError):
        freeze.train_only(gpt2(), *bad)


def test_module_names_elides_numbered_blocks():
    names = freeze.module_names(llama(layers=12))
    assert names[:4] == ["model", "model.embed_tokens", "model.layers", "model.layers.0"]
    assert "..." in names and "model.layers.11" in names and "model.layers.6" not in names


# ------------------------------------------------------------------------------------------------ real decoder
def test_real_decoder():
    model, _ = zoo.load("decoder", Config(profile="local", device=torch.device("cpu")), head="classification",
                        num_labels=2)
    n = model.config.num_hidden_layers
    block, norm, head = freeze.last_block(model), freeze.final_norm(model), freeze.head(model)
    assert (block, norm, head) == (f"model.layers.{n - 1}", "model.norm", ["score"])
    names = freeze.train_only(model, block, norm, *head)
    expected = sum(p.numel() for m in (block, norm, *head) for p in model.get_submodule(m).parameters())
    assert params.count_parameters(model)["trainable"] == expected
    assert all(n.startswith((block + ".", norm + ".", "score.")) for n in names)
