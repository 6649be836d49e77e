"""mtlib.forgetting: the TREC probe reads zero forgetting for an untouched body, measures a damaged one, and reads a
tuned model with its technique's module in place (a soft prompt's positions left out of the mean)."""
import copy

import pytest
import torch

import mtlib
from mtlib import zoo
from mtlib.forgetting import TrecProbe, text_features
from mtlib.tuning import prompt


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    cfg = mtlib.setup(profile="smoke", verbose=False)
    tokenizer = zoo.load_tokenizer("encoder", cfg)
    pretrained = zoo.load_model("encoder", cfg, num_labels=2)
    return cfg, tokenizer, pretrained, TrecProbe(tokenizer, pretrained, cfg.device, train=60, validation=30, test=50)


def test_untouched_body_forgets_nothing(setting):
    cfg, _, pretrained, probe = setting
    model = copy.deepcopy(pretrained)
    torch.nn.init.normal_(model.classifier.weight)  # a new head changes nothing the probe reads
    assert probe.forgetting(model) == {"probe_before": probe.before, "probe_after": probe.before, "forgetting": 0.0}
    assert 0.4 < probe.before <= 1.0 and probe.C in (0.01, 0.1, 1.0)


def test_damaged_body_forgets(setting):
    _, _, pretrained, probe = setting
    model = copy.deepcopy(pretrained)
    with torch.no_grad():
        for layer in zoo.transformer_layers(model):
            layer.attention.self.query.weight.normal_()
            layer.intermediate.dense.weight.normal_()
    result = probe.forgetting(model)
    assert result["forgetting"] > 5 and result["probe_after"] < probe.before


def test_prompt_positions_are_left_out(setting):
    cfg, _, pretrained, probe = setting
    model = copy.deepcopy(pretrained)
    prompt.apply(model, prompt.PromptConfig(num_virtual_tokens=5))
    vectors, labels = text_features(model, probe.loaders["test"], cfg.device)
    plain, _ = text_features(pretrained, probe.loaders["test"], cfg.device)
    assert vectors.shape == plain.shape and (labels >= 0).all()
    assert not torch.allclose(torch.tensor(vectors), torch.tensor(plain))  # the prompt, in place, changes the states
