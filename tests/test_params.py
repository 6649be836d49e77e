"""mtlib.params: parameter counts against hand counts (frozen parts, tied weights) and the per-module report."""
import pytest
from torch import nn

from mtlib import params


def small():
    # Linear(4, 3): 4*3 + 3 = 15; LayerNorm(3): 3 + 3 = 6; Linear(3, 2, bias=False): 6  -> 27
    return nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))


def test_count_by_hand():
    assert params.count_parameters(small()) == {"trainable": 27, "total": 27, "percent": 100.0}


def test_frozen_parts_are_not_trainable():
    model = small()
    for p in model[0].parameters():
        p.requires_grad = False
    counts = params.count_parameters(model)
    assert counts["trainable"] == 12 and counts["total"] == 27
    assert counts["percent"] == pytest.approx(100 * 12 / 27)


def test_tied_weights_counted_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)   # 40
            self.body = nn.Linear(4, 4)        # 20
            self.head = nn.Linear(4, 10)       # 40 + 10, weight shared with embed
            self.head.weight = self.embed.weight

    counts = params.count_parameters(Tied())
    assert counts["total"] == 40 + 20 + 10 == counts["trainable"]
    report = params.parameter_report(Tied(), depth=1)
    assert report["total"].sum() == 70


def test_no_parameters():
    assert params.count_parameters(nn.ReLU()) == {"trainable": 0, "total": 0, "percent": 0.0}


def test_parameter_report():
    model = nn.Sequential(small(), nn.Linear(2, 5))  # 27 + 15
    model[0][2].weight.requires_grad = False
    report = params.parameter_report(model, depth=2)
    assert list(report.index) == ["0.0", "0.1", "0.2", "1.weight", "1.bias"]
    assert report.index.name == "module"
    assert report.loc["0.0", "total"] == 15 and report.loc["0.2", "trainable"] == 0
    assert report.loc["0.2", "trainable %"] == 0.0 and report.loc["0.1", "trainable %"] == 100.0
    counts = params.count_parameters(model)
    assert report["total"].sum() == counts["total"] == 42
    assert report["trainable"].sum() == counts["trainable"] == 36
    top = params.parameter_report(model, depth=1)
    assert top.to_dict("index") == {"0": {"trainable": 21, "total": 27, "trainable %": round(100 * 21 / 27, 2)},
                                    "1": {"trainable": 15, "total": 15, "trainable %": 100.0}}


def test_parameter_report_of_a_transformer():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=16))
    for p in model.embeddings.parameters():
        p.requires_grad = False
    report = params.parameter_report(model, depth=2)
    assert set(report.index) == {"embeddings.word_embeddings", "embeddings.position_embeddings",
                                 "embeddings.token_type_embeddings", "embeddings.LayerNorm", "encoder.layer",
                                 "pooler.dense"}
    assert report.loc["embeddings.word_embeddings", "total"] == 50 * 8
    counts = params.count_parameters(model)
    assert report["total"].sum() == counts["total"] and report["trainable"].sum() == counts["trainable"]


@pytest.mark.parametrize("depth", [0, -1])
def test_depth_must_be_positive(depth):
    with pytest.raises(ValueError, match=f"depth must be at least 1, got {depth}"):
        params.parameter_report(small(), depth=depth)
