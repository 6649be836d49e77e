"""mtlib.tuning.layerwise (chapter 06) and the fixed task of Part II (tuning.task): which parameters the top k
blocks are, rates that shrink with depth over every parameter, the seed's optimiser bug and its fix, clear errors."""
import numpy as np
import pytest
import torch

import mtlib
from mtlib.tuning import bitfit, common, layerwise, task
import tiny_models
from tiny_models import batch, one_thread  # noqa: F401 (one_thread: autouse)


def tiny_bert():
    return tiny_models.tiny_bert(layers=3)


def tiny_gpt2():
    return tiny_models.tiny_gpt2(layers=3)


def tiny_llama():
    return tiny_models.tiny_llama(layers=3)


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("make, stack, above, head", [
    (tiny_bert, "bert.encoder.layer", "bert.pooler", "classifier"),
    (tiny_gpt2, "transformer.h", "transformer.ln_f", "score"),
    (tiny_llama, "model.layers", "model.norm", "score")])
def test_top_k_trains_the_top_blocks_what_is_above_them_and_the_head(make, stack, above, head):
    model = make()
    layerwise.apply(model, layerwise.LayerwiseConfig(k=1))
    names = trainable(model)
    assert any(n.startswith(f"{stack}.2.") for n in names)
    assert not any(n.startswith((f"{stack}.0.", f"{stack}.1.")) for n in names)
    assert any(n.startswith(above + ".") for n in names) and any(n.startswith(head + ".") for n in names)
    assert len([n for n, _ in model.named_parameters()]) > len(names)


def test_k_zero_and_k_all():
    model = tiny_bert()
    layerwise.apply(model, layerwise.LayerwiseConfig(k=0))
    assert trainable(model) == {n for n, _ in model.named_parameters() if n.startswith(("bert.pooler.", "classifier."))}
    model = tiny_bert()
    layerwise.apply(model, layerwise.LayerwiseConfig(k=3))
    assert trainable(model) == {n for n, _ in model.named_parameters() if not n.startswith("bert.embeddings.")}


@pytest.mark.parametrize("k", [-1, 4, 1.5, "2"])
def test_k_outside_the_blocks_is_a_clear_error(k):
    with pytest.raises(common.TuningError, match="from 0 to 3"):
        layerwise.apply(tiny_bert(), layerwise.LayerwiseConfig(k=k))


def test_applying_twice_is_an_error():
    model = tiny_bert()
    layerwise.apply(model, layerwise.LayerwiseConfig(k=1))
    with pytest.raises(common.TuningError, match="already applied"):
        layerwise.apply(model, layerwise.LayerwiseConfig(k=2))


@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2, tiny_llama])
def test_depth_groups_cover_every_parameter_once_with_rates_shrinking_with_depth(make):
    model = make()
    groups = layerwise.depth_groups(model, lr=1.0, decay=0.5)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    blocks = layerwise.block_names(model)
    top_block = next(p for n, p in named.items() if n.startswith(blocks[-1] + "."))
    bottom_block = next(p for n, p in named.items() if n.startswith(blocks[0] + "."))
    embedding = model.get_input_embeddings().weight
    head = next(p for n, p in named.items() if n.startswith(mtlib.freeze.head(model)[0]))
    assert rate[id(head)] == 1.0 and rate[id(top_block)] == 0.5
    assert rate[id(bottom_block)] == 0.5 ** 3 and rate[id(embedding)] == 0.5 ** 4
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert all((p.dim() >= 2) == (id(p) in decayed) for p in model.parameters())


def test_bad_decay_is_a_clear_error():
    with pytest.raises(common.TuningError, match=r"\(0, 1\]"):
        layerwise.depth_groups(tiny_bert(), lr=1e-3, decay=0)


def step(model, optimizer):
    optimizer.zero_grad()
    model(**batch()).loss.backward()
    optimizer.step()


def test_an_optimiser_built_before_unfreezing_never_updates_the_block_and_depth_groups_do():
    """Bug 1 of chapter 06 (a version often seen in tutorials): the optimiser only holds what was trainable when it was built."""
    for build, moves in ((lambda m: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2), False),
                         (lambda m: torch.optim.AdamW(layerwise.depth_groups(m, lr=1e-2, decay=1.0)), True)):
        model = tiny_bert()
        layerwise.apply(model, layerwise.LayerwiseConfig(k=0))
        optimizer = build(model)
        step(model, optimizer)
        mtlib.freeze.unfreeze(model, layerwise.block_names(model)[-1])  # unfreeze the top block after building
        block = model.bert.encoder.layer[2].output.dense.weight
        before = block.detach().clone()
        frozen = model.bert.encoder.layer[0].output.dense.weight.detach().clone()
        step(model, optimizer)
        assert (not torch.equal(block, before)) == moves
        assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, frozen)  # still frozen: never moves


def test_the_fixed_task_runs_a_technique_and_reports_every_column():
    cfg = mtlib.setup(profile="smoke", verbose=False)
    fixed = task.SST2Task(cfg)
    assert [len(fixed.ds[s]) for s in ("train", "validation", "test")] == [64, 16, 32]  # the store's smoke sample
    first = [b["input_ids"].tolist() for b in fixed.loaders(0)["train"]]
    assert first == [b["input_ids"].tolist() for b in fixed.loaders(0)["train"]]  # the same batches every run
    run = fixed.run("BitFit", bitfit.apply, lr=3e-3, seed=0)
    model = fixed.model(0)
    biases = sum(p.numel() for n, p in model.named_parameters() if n.endswith(".bias"))
    assert run.trainable == biases + model.classifier.weight.numel()
    assert len(run.history.steps) == fixed.steps == len(fixed.loaders(0)["train"])  # the budget, across epochs
    assert fixed.epochs == fixed.steps * task.BATCH_SIZE / 64
    assert 0 <= run.test_accuracy <= 1 and run.seconds_per_step > 0 and run.saved_bytes > 4 * run.trainable
    table = task.compare([run, fixed.run("BitFit", bitfit.apply, lr=3e-3, seed=1)])
    assert table.loc["BitFit", "seeds"] == 2 and table.loc["BitFit", "± sd"] >= 0
    probe = fixed.probe()  # the frozen control: one 0/1 per test sentence, in the runs' order
    assert probe.shape == run.test_correct.shape and set(np.unique(probe)) <= {0.0, 1.0}
    assert list(table.columns) == ["lr", "seeds", "validation accuracy", "test accuracy", "± sd",
                                   "trainable parameters", "trainable %", "s / step", "peak memory (MiB)",
                                   "saved (MiB)"]


def test_the_fixed_task_is_the_stores_setting(tmp_path):
    """A chapter's live run gives the store's record exactly; the controls come from the store where it holds them
    (at the rate its rule chose) and are trained otherwise."""
    from mtlib.store import Store
    from mtlib.tuning.leaderboard import METHODS, PROBE, SEEDS, provenance
    from mtlib.tuning.rates import rate_rule

    cfg = mtlib.setup(profile="smoke", verbose=False)
    store = Store(tmp_path / "store.jsonl")
    fixed = task.SST2Task(cfg, store=store)
    board, method = fixed.board, METHODS["BitFit"]
    assert fixed.stored("BitFit") is None  # an empty store: nothing to read
    made = provenance("test")
    first = {lr: board.key(method, lr, SEEDS[0], fixed.steps) for lr in method.rates}
    for key in first.values():  # the first seed at every rate of the grid ...
        store.add(key, board.run(key), made)
    assert fixed.stored("BitFit") is None  # incomplete: the other seeds are missing
    chosen = rate_rule({lr: store.get(key)["values"]["val_loss"] for lr, key in first.items()})[0]
    for seed in SEEDS[1:]:  # ... then the other seeds at the rate the rule chose
        key = board.key(method, chosen, seed, fixed.steps)
        store.add(key, board.run(key), made)
    cell = fixed.stored("BitFit")
    assert cell is not None and cell.lr == chosen and len(cell.runs) == len(SEEDS)

    live = fixed.run("BitFit", bitfit.apply, lr=cell.lr, seed=SEEDS[1])
    assert "".join(str(int(c)) for c in live.test_correct) == cell.runs[1]["test_correct"]  # the record, exactly
    assert live.history.steps == pytest.approx(cell.runs[1]["train_loss"], abs=1e-5)

    read = fixed.controls(names=("BitFit",))
    assert [r.seed for r in read] == list(SEEDS) and {r.lr for r in read} == {cell.lr}
    assert [r.test_accuracy for r in read] == pytest.approx(list(cell.values("test_accuracy")))
    trained = fixed.controls(names=("head only",), seeds=[0])  # not in the store: trained here
    assert len(trained) == 1 and trained[0].lr == METHODS["head only"].rates[1]
    assert list(task.compare(read + trained).index) == ["BitFit", "head only"]

    store.add(board.key(PROBE, None, 0, 0), board.run_probe(), made)
    assert fixed.probe().tolist() == [float(c) for c in store.get(board.key(PROBE, None, 0, 0))["values"]["test_correct"]]


def test_paired_difference_is_exact_for_a_constant_gap_and_refuses_other_test_sets():
    a = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=float)
    b = np.array([1, 0, 0, 1], dtype=float)
    out = task.paired_difference(a, b)
    assert out["difference"] == pytest.approx(0.375) and out["low"] <= 0.375 <= out["high"]
    same = task.paired_difference(b, b)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="different test sets"):
        task.paired_difference(a, b[:3])


def test_mean_pooled_features_leave_the_padding_out():
    body = tiny_models.tiny_bert().bert
    short = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
             "labels": torch.tensor([1])}
    padded = {"input_ids": torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]]),
              "attention_mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]), "labels": torch.tensor([1, 0])}
    alone, labels_alone = task.mean_pooled_features(body, [short], "cpu")
    together, labels = task.mean_pooled_features(body, [padded], "cpu")
    assert together.shape == (2, tiny_models.HIDDEN) and labels.tolist() == [1, 0]
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)  # the two padding positions change nothing
    assert labels_alone.tolist() == [1]
