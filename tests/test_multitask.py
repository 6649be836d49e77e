"""mtlib.multitask: sampling frequencies follow the temperature formula; one head per task on a shared body."""
import collections

import pytest
import torch
from torch.utils.data import DataLoader

from mtlib.multitask import MultiHeadClassifier, TaskBatches, sampling_probabilities
from tiny_models import batch, one_thread, tiny_bert  # noqa: F401 (one_thread: a fixture)

SIZES = {"a": 2000, "b": 500, "c": 300, "d": 100}


def test_sampling_probabilities_follow_the_formula():
    proportional = sampling_probabilities(SIZES, 1.0)
    assert proportional["a"] == pytest.approx(2000 / 2900)
    t2 = sampling_probabilities(SIZES, 2.0)
    assert t2["d"] / t2["a"] == pytest.approx((100 / 2000) ** 0.5)
    flat = sampling_probabilities(SIZES, 1e6)
    assert max(flat.values()) - min(flat.values()) < 1e-4
    assert sum(t2.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        sampling_probabilities(SIZES, 0.0)
    with pytest.raises(ValueError, match="at least one example"):
        sampling_probabilities({"a": 0}, 1.0)


def test_task_batches_draw_tasks_at_those_frequencies_and_restart_loaders():
    loaders = {task: DataLoader(list(range(n)), batch_size=50) for task, n in SIZES.items()}
    drawn = list(TaskBatches(loaders, temperature=2.0, steps=4000, seed=0))
    counts = collections.Counter(task for task, _ in drawn)
    expected = sampling_probabilities(SIZES, 2.0)
    for task, p in expected.items():
        assert abs(counts[task] / 4000 - p) < 0.03, (task, counts[task], p)
    d_batches = [b for task, b in drawn if task == "d"]
    assert torch.equal(d_batches[0], d_batches[2])  # "d" has 2 batches: its loader restarted
    uniform = collections.Counter(t for t, _ in TaskBatches(loaders, float("inf"), 4000, seed=1))
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in uniform.values())
    assert list(TaskBatches(loaders, 2.0, 50, seed=3)) and len(TaskBatches(loaders, 2.0, 50)) == 50


def test_multi_head_classifier_shares_the_body_and_keeps_heads_apart():
    body = tiny_bert().bert
    model = MultiHeadClassifier(body, {"sst2": 2, "trec": 6})
    inputs = batch(n=4)
    out = model("trec", inputs["input_ids"], inputs["attention_mask"], labels=torch.tensor([0, 5, 2, 1]))
    assert out.logits.shape == (4, 6) and out.loss.item() > 0
    out.loss.backward()
    assert model.heads["sst2"].weight.grad is None and model.heads["trec"].weight.grad is not None
    assert body.encoder.layer[0].attention.self.query.weight.grad is not None
    with pytest.raises(ValueError, match="No head for task 'spam'"):
        model("spam", inputs["input_ids"], inputs["attention_mask"])
