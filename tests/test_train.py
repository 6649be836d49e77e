"""mtlib.train: the loop learns, touches only trainable weights, accumulates gradients, checks labels; evaluate/predict.

Two real runs (the encoder on 32 SST-2 sentences) show that the loss goes down and that frozen weights stay put; the
other tests use a tiny BERT built from a config, on random token ids, so that they cost little.
"""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import DatasetDict
from torch.utils.data import DataLoader
from transformers import BertConfig, BertForSequenceClassification

from mtlib import data, metrics, train, zoo
from mtlib.runtime import Config
from mtlib.train import History, LabelError

MIRROR = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _mirror(monkeypatch):
    monkeypatch.setenv("MTLIB_DATA_DIR", str(MIRROR))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a small machine shared with other jobs, two threads run these small steps ~3x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg():
    return Config(profile="local", device=CPU)


@pytest.fixture(scope="module")
def tokenizer(cfg):
    return zoo.load_tokenizer("encoder", cfg)


@pytest.fixture(scope="module")
def sst2_loaders(tokenizer):
    """32 SST-2 training sentences (two batches of 16), max_length 32, and 16 validation sentences."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTLIB_DATA_DIR", str(MIRROR))
        ds = data.sample(data.load_dataset("sst2"), train=32, validation=16, seed=0)
    ds = DatasetDict(train=ds["train"], validation=ds["validation"])
    return data.make_loaders(ds, tokenizer, batch_size=16, max_length=32, seed=0)


VOCAB = 100


def tiny_model(num_labels=2, seed=0):
    """A two-layer BERT with a 100-token vocabulary and no dropout: a real architecture at almost no cost."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=num_labels, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, pad_token_id=0)
    return BertForSequenceClassification(config)


def tiny_rows(n=20, num_labels=2, seed=0, labels=None):
    """n rows of random token ids (lengths 3 to 9) with labels i % num_labels (or the given labels; None: none)."""
    rng = np.random.default_rng(seed)
    labels = [i % num_labels for i in range(n)] if labels is None else labels
    rows = [{"input_ids": rng.integers(1, VOCAB, rng.integers(3, 10)).tolist()} for _ in range(n)]
    for row, label in zip(rows, labels if labels is not False else []):
        row["labels"] = label
    return rows


def pad(rows):
    width = max(len(r["input_ids"]) for r in rows)
    batch = {"input_ids": torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in rows]),
             "attention_mask": torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                             for r in rows])}
    if "labels" in rows[0]:
        batch["labels"] = torch.tensor([r["labels"] for r in rows])
    return batch


def loader(rows=None, batch_size=4):
    """A plain, unshuffled DataLoader that pads each batch."""
    return DataLoader(tiny_rows() if rows is None else rows, batch_size=batch_size, collate_fn=pad)


def adam_steps(optimizer) -> int:
    return int(next(iter(optimizer.state.values()))["step"])


# --------------------------------------------------------------------------------------------- real run
def test_fit_lowers_the_training_loss(cfg, sst2_loaders, capsys):
    torch.manual_seed(0)
    model = zoo.load_model("encoder", cfg, num_labels=2)
    history = train.fit(model, sst2_loaders["train"], epochs=3, lr=5e-4, verbose=True)
    assert isinstance(history, History)
    assert [row["epoch"] for row in history.epochs] == [1, 2, 3]
    assert len(history.steps) == 3 * 2  # one loss per batch
    assert all(isinstance(s, float) and np.isfinite(s) for s in history.steps)
    for i, row in enumerate(history.epochs):
        assert set(row) == {"epoch", "train_loss", "seconds"}  # no validation loader, no val_ columns
        assert row["train_loss"] == pytest.approx(np.mean(history.steps[2 * i: 2 * i + 2]))
        assert row["seconds"] > 0
    first, last = history.epochs[0]["train_loss"], history.epochs[-1]["train_loss"]
    assert last < 0.8 * first, history.steps
    frame = history.frame()
    assert list(frame.index) == [1, 2, 3] and frame.index.name == "epoch"
    assert history.last is history.epochs[-1]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  train_loss ") and lines[0].endswith(" s)")


def test_fit_changes_only_trainable_parameters(cfg, sst2_loaders):
    model = zoo.load_model("encoder", cfg, num_labels=2)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("classifier.")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    history = train.fit(model, sst2_loaders["train"], sst2_loaders["validation"], epochs=1, lr=1e-2,
                        scheduler=None, verbose=False)
    assert {"val_loss", "val_accuracy", "val_macro_f1"} <= set(history.last)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert changed == {"classifier.weight", "classifier.bias"}
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]


# ------------------------------------------------------------------------------------------- tiny model
def test_validation_metrics_each_epoch(capsys):
    model = tiny_model()
    val = loader(tiny_rows(12, seed=1), batch_size=8)
    history = train.fit(model, loader(), val, epochs=2, lr=1e-3, log_every=2, verbose=True)
    assert len(history.epochs) == 2 and len(history.steps) == 10
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6
    assert [line.split("  loss")[0] for line in lines[:2] + lines[3:5]] == ["  step 2/5", "  step 4/5"] * 2
    for line, epoch in ((lines[2], 1), (lines[5], 2)):
        assert line.startswith(f"epoch {epoch}/2  train_loss ") and "  val_accuracy " in line
    for row in history.epochs:
        assert set(row) == {"epoch", "train_loss", "seconds", "val_loss", "val_accuracy", "val_macro_f1"}
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["val_macro_f1"] <= 1
    assert history.last["val_loss"] == pytest.approx(train.evaluate(model, val)["loss"])
    assert list(history.frame().columns) == ["train_loss", "seconds", "val_loss", "val_accuracy", "val_macro_f1"]


@pytest.mark.parametrize("bad, shown", [([0, 1, 2, 5], "0..5"), ([0, -1, 1, 1], "-1..1")])
def test_labels_out_of_range(bad, shown):
    model = tiny_model(num_labels=2)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(LabelError) as err:
        train.fit(model, loader(tiny_rows(4, labels=bad)), epochs=1, verbose=False)
    message = str(err.value)
    assert f"found labels {shown}" in message
    assert "2 outputs (classes 0..1)" in message
    assert "num_labels" in message and "label_names" in message
    assert isinstance(err.value, ValueError)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # raised before any update


def test_check_labels():
    train.check_labels(torch.tensor([0, 2, 1]), 3)
    train.check_labels(torch.tensor([], dtype=torch.long), 2)
    with pytest.raises(LabelError, match="found labels 3..3"):
        train.check_labels(torch.tensor([3]), 3)


def test_fit_rejects_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        train.fit(model, loader(), epochs=0)
    with pytest.raises(ValueError, match="training loader is empty"):
        train.fit(model, DataLoader([], batch_size=4), epochs=1)
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="No parameter requires a gradient"):
        train.fit(model, loader(), epochs=1)


def test_keep_best_rejects_bad_arguments():
    model = tiny_model()
    with pytest.raises(ValueError, match="keep_best takes .* no validation loader"):
        train.fit(model, loader(), epochs=1, keep_best="accuracy")
    with pytest.raises(ValueError, match="keep_best='f1'"):
        train.fit(model, loader(), loader(), epochs=1, keep_best="f1")
    with pytest.raises(ValueError, match="patience=2 with keep_best=None"):
        train.fit(model, loader(), loader(), epochs=1, patience=2)
    with pytest.raises(ValueError, match="patience=0"):
        train.fit(model, loader(), loader(), epochs=1, keep_best="loss", patience=0)


def test_keep_best_ends_with_the_best_epoch():
    """The model ends with the weights of its best validation epoch, whatever the epochs after it did."""
    rows = tiny_rows(24, seed=4)
    model = tiny_model(seed=1)
    history = train.fit(model, loader(rows[:16]), loader(rows[16:]), epochs=6, lr=0.05, scheduler=None,
                        keep_best="loss", verbose=False)
    losses = [row["val_loss"] for row in history.epochs]
    assert len(losses) == 6 and history.best_epoch == int(np.argmin(losses)) + 1
    assert history.best_epoch < 6  # a rate this large overfits 16 rows: the last epoch is not the best
    assert train.evaluate(model, loader(rows[16:]))["loss"] == pytest.approx(min(losses), rel=1e-6)


def test_patience_stops_early():
    """With nothing to learn (learning rate 0) no epoch beats the first: patience 2 stops after epoch 3."""
    model = tiny_model()
    history = train.fit(model, loader(), loader(), epochs=10, lr=0.0, scheduler=None, keep_best="accuracy",
                        patience=2, verbose=False)
    assert [row["epoch"] for row in history.epochs] == [1, 2, 3] and history.best_epoch == 1


@pytest.mark.parametrize("batches, grad_accum, updates_per_epoch", [(4, 2, 2), (5, 2, 3)])
def test_gradient_accumulation_counts_updates(batches, grad_accum, updates_per_epoch):
    """grad_accum=2 makes half as many optimiser updates (a last, incomplete group still makes one)."""
    model = tiny_model(num_labels=6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rows = tiny_rows(4 * batches, num_labels=6)  # six classes: the label check uses the head's size
    history = train.fit(model, loader(rows), epochs=2, grad_accum=grad_accum, optimizer=optimizer,
                        scheduler="linear", warmup=0.0, verbose=False)
    assert adam_steps(optimizer) == 2 * updates_per_epoch
    assert len(history.steps) == 2 * batches  # the loss of every batch is still recorded
    # the linear schedule ran exactly its planned number of steps: it ends at zero
    assert optimizer.param_groups[0]["lr"] == 0.0


def test_gradient_accumulation_equals_a_bigger_batch():
    """Two accumulated batches of 4 give the same update as one batch of 8."""
    rows = tiny_rows(8)
    small, big, reference = tiny_model(), tiny_model(), tiny_model()
    # plain SGD: the update is linear in the gradient, so the two runs must agree to float precision
    train.fit(small, loader(rows, batch_size=4), epochs=1, grad_accum=2, scheduler=None,
              optimizer=torch.optim.SGD(small.parameters(), lr=0.5), max_grad_norm=None, verbose=False)
    train.fit(big, loader(rows, batch_size=8), epochs=1, grad_accum=1, scheduler=None,
              optimizer=torch.optim.SGD(big.parameters(), lr=0.5), max_grad_norm=None, verbose=False)
    assert not torch.equal(small.classifier.weight, reference.classifier.weight)  # trained
    for (name, a), b in zip(small.named_parameters(), big.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_constant_learning_rate_and_custom_loss():
    calls = []

    def loss_fn(outputs, batch):
        loss = F.cross_entropy(outputs.logits, batch["labels"]) * 2
        calls.append(loss.item())
        return loss

    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = train.fit(model, loader(), epochs=1, optimizer=optimizer, scheduler=None, loss_fn=loss_fn,
                        verbose=False)
    assert optimizer.param_groups[0]["lr"] == 3e-3
    assert adam_steps(optimizer) == 5
    assert history.steps == calls and len(calls) == 5


def test_decay_groups_leave_biases_and_norms_undecayed():
    model = tiny_model()
    model.bert.embeddings.requires_grad_(False)  # frozen parameters belong to no group
    decayed, plain = train.decay_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert {names[id(p)] for p in plain["params"]} == {
        n for n, p in model.named_parameters() if p.requires_grad and (n.endswith("bias") or "LayerNorm" in n)}
    assert "classifier.weight" in {names[id(p)] for p in decayed["params"]}
    grouped = [id(p) for group in (decayed, plain) for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each once


def test_fit_does_not_decay_biases():
    """With zero gradients, an AdamW step changes only the weights it decays: the matrices."""
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # a loss of zero has zero gradients: the only change a step makes is the decay
    train.fit(model, loader(), epochs=1, lr=0.1, weight_decay=0.5, scheduler=None, max_grad_norm=None,
              loss_fn=lambda out, batch: (out.logits * 0).sum(), verbose=False)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (p.dim() >= 2), name


# -------------------------------------------------------------------------------------- evaluate, predict
def test_evaluate_matches_predict_and_a_hand_computation():
    model = tiny_model(num_labels=3, seed=3)
    rows = tiny_rows(20, num_labels=3, seed=2)
    val = loader(rows, batch_size=8)  # batches of 8, 8 and 4: the loss is a mean over rows, not batches
    result = train.evaluate(model, val)
    out = train.predict(model, val)
    assert set(result) == {"loss", "accuracy", "macro_f1"}
    assert result["accuracy"] == metrics.accuracy(out["preds"], out["labels"])
    assert result["macro_f1"] == metrics.macro_f1(out["preds"], out["labels"], 3)
    assert result["loss"] == out["loss"]
    # by hand: every row scored alone
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(input_ids=torch.tensor([r["input_ids"]])).logits for r in rows])
    labels = [r["labels"] for r in rows]
    assert out["labels"].tolist() == labels
    assert out["preds"].tolist() == logits.argmax(-1).tolist()
    assert len(set(out["preds"].tolist())) > 1  # a test where accuracy is neither 0 nor 1 by construction
    assert result["accuracy"] == pytest.approx(np.mean(logits.argmax(-1).numpy() == np.array(labels)))
    assert result["loss"] == pytest.approx(F.cross_entropy(logits, torch.tensor(labels)).item(), rel=1e-5)
    assert not model.training


def test_predict_without_labels():
    out = train.predict(tiny_model(), loader(tiny_rows(10, labels=False), batch_size=4))
    assert set(out) == {"preds"} and out["preds"].shape == (10,)
