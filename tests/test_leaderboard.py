"""The results store's runs (mtlib.tuning.leaderboard, scripts/leaderboard.py) under the smoke profile: every method
trains through the same path, the script fills a store, resumes it, and a re-run of a record matches it exactly."""
import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import mtlib
from mtlib import data
from mtlib.store import Store
from mtlib.tuning import leaderboard
from mtlib.train import fit
from mtlib.tuning.leaderboard import METHODS, PROBE, Leaderboard, StepBudget, same_values
from mtlib.tuning.rates import next_rate, rate_rule

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("leaderboard_script", ROOT / "scripts" / "leaderboard.py")
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


@pytest.fixture(scope="module")
def board():
    torch.set_num_threads(1)  # as the test workers: the script's runs must find the same key
    return Leaderboard(mtlib.setup(profile="smoke", verbose=False))


def test_step_budget_runs_on_through_epochs():
    batches = data.LengthGroupedBatches([5, 3, 8, 1, 9, 2, 7], batch_size=2, generator=torch.Generator().manual_seed(0))
    served = list(StepBudget(batches, steps=9))
    assert len(served) == len(StepBudget(batches, 9)) == 9
    epoch = sorted(i for batch in served[:4] for i in batch)
    assert epoch == list(range(7))  # the first 4 batches are one epoch: every row once
    with pytest.raises(ValueError, match="at least one optimiser step"):
        StepBudget(batches, 0)


def test_half_decade_rates():
    assert [next_rate(r, up=True) for r in (1e-4, 3e-4, 3e-3)] == [3e-4, 1e-3, 1e-2]
    assert [next_rate(r, up=False) for r in (1e-4, 3e-4, 3e-2)] == [3e-5, 1e-4, 1e-2]
    with pytest.raises(ValueError, match="half-decade"):
        next_rate(5e-4, up=True)


def test_rate_rule():
    assert rate_rule({1e-4: 0.40, 3e-4: 0.35, 1e-3: 0.50}) == (3e-4, None)  # interior: it stands
    assert rate_rule({1e-4: 0.30, 3e-4: 0.35, 1e-3: 0.50}) == (1e-4, 3e-5)  # at the lower edge: try below
    assert rate_rule({1e-4: 0.50, 3e-4: 0.35, 1e-3: 0.30}) == (1e-3, 3e-3)


class LossCurve:
    """A stand-in for Leaderboard whose runs return a validation loss from a function of the rate."""

    def __init__(self, loss):
        self.loss, self.ran = loss, []

    def key(self, method, lr, seed, steps):
        return {"method": method.name, "lr": lr, "seed": seed, "steps": steps}

    def run(self, key):
        self.ran.append(key["lr"])
        return {"val_loss": self.loss(key["lr"]), "test_accuracy": 0.5, "forgetting": 0.0}


def rate_of(loss, tmp_path, extensions=script.EXTENSIONS):
    board = LossCurve(loss)
    filler = script.Filler(board, Store(tmp_path / f"s{len(list(tmp_path.iterdir()))}.jsonl"), "test", None, False)
    script.EXTENSIONS, saved = extensions, script.EXTENSIONS
    try:
        return filler.rate(METHODS["BitFit"], steps=10), board.ran
    finally:
        script.EXTENSIONS = saved


def test_filler_extends_the_grid_until_the_choice_is_interior(tmp_path):
    import math
    best_at = lambda best: (lambda lr: (math.log10(lr) - math.log10(best)) ** 2)  # lowest loss at `best`
    assert rate_of(best_at(3e-3), tmp_path) == (3e-3, [1e-3, 3e-3, 1e-2])  # interior: no extension
    assert rate_of(best_at(1e-4), tmp_path) == (1e-4, [1e-3, 3e-3, 1e-2, 3e-4, 1e-4, 3e-5])  # two steps down
    assert rate_of(best_at(1e-1), tmp_path) == (1e-1, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1])  # two steps up


def test_filler_stops_extending_after_the_cap(tmp_path, capsys):
    lr, ran = rate_of(lambda lr: lr, tmp_path, extensions=2)  # the smaller, the better: always the lower edge
    assert ran == [1e-3, 3e-3, 1e-2, 3e-4, 1e-4] and lr == 1e-4
    assert "still at the edge" in capsys.readouterr().out


def test_diverged_run_never_wins(tmp_path):
    lr, ran = rate_of(lambda lr: float("nan") if lr == 1e-3 else {3e-3: 0.3, 1e-2: 0.5}.get(lr, 1.0), tmp_path)
    assert lr == 3e-3 and ran == [1e-3, 3e-3, 1e-2]


def test_every_method_trains_what_it_should(board):
    """Each method's preparation, then one optimiser step on 4 sentences: of the pretrained weights, what the method
    trains moves and the rest stays; the parameter-efficient methods train new weights of their own."""
    batch = board.collator([board.tokens["train"][i] for i in range(4)])
    head = ("classifier.", "bert.pooler.")
    for method in METHODS.values():
        model = board.model(seed=0)
        pretrained = {id(p): (n, p.detach().clone()) for n, p in model.named_parameters()}
        optimizer = board.prepare(method, model, lr=method.rates[1], steps=14)
        params = [p for p in model.parameters() if p.requires_grad]
        trained = {pretrained[id(p)][0] for p in params if id(p) in pretrained}
        new = [p for p in params if id(p) not in pretrained]
        fit(model, [batch], epochs=1, lr=method.rates[1], optimizer=optimizer, verbose=False)
        moved = {n for i, (n, before) in pretrained.items()
                 if not torch.equal(before, next(p for p in model.parameters() if id(p) == i))}
        assert moved and moved <= trained, method.name
        if method.technique in ("full", "discriminative"):
            assert len(trained) == len(pretrained) and not new, method.name
        elif method.technique in ("gradual", "layerwise"):  # the head and pooler (the first block after 14 / 7 steps)
            assert all(n.startswith(head) for n in trained) and not new, method.name
        elif method.technique == "bitfit":
            assert all(n.endswith(".bias") or n.startswith(head) for n in trained) and not new, method.name
        else:
            assert all(n.startswith(head) for n in trained) and new, method.name


def test_a_chapter_preparing_the_model_itself_reproduces_the_record(board):
    """A chapter applies its own written-out technique and calls train_and_measure: the values are the record's."""
    from mtlib.tuning import bitfit

    method = METHODS["BitFit"]
    stored = board.run(board.key(method, method.rates[1], seed=1, steps=2))
    model = board.model(seed=1)
    bitfit.apply(model, bitfit.BitFitConfig())
    assert same_values(stored, board.train_and_measure(model, method.rates[1], seed=1, steps=2)) == []


def test_time_steps_measures_training_and_inference(board):
    steps, inference = script.time_steps(board, [METHODS["LoRA r=8, query and value"]], rounds=1, steps=3, skip=1)
    assert list(steps) == list(inference) == ["LoRA r=8, query and value"]
    assert 0 < inference["LoRA r=8, query and value"][0] < steps["LoRA r=8, query and value"][0]


def test_key_from_another_setting_is_refused(board):
    key = board.key(METHODS["BitFit"], 1e-3, 0, 2)
    key["precision"] = "bf16"
    with pytest.raises(ValueError, match="another setting"):
        board.run(key)


def test_pick_rate_grows_the_grid_past_an_edge():
    from types import SimpleNamespace

    from mtlib.tuning.rates import pick_rate

    def run_at(loss_of):
        tried = []

        def run(lr):
            tried.append(lr)
            return SimpleNamespace(lr=lr, history=SimpleNamespace(last={"val_loss": loss_of(lr)}))
        return run, tried

    def loss(lr):
        return abs(np.log10(lr) + 2.2)  # lowest near 6e-3, above the grid

    run, tried = run_at(loss)
    best, grid = pick_rate(run, (1e-4, 3e-4, 1e-3), extensions=2)  # two steps up, still at the edge: it stands
    assert tried == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2] and best.lr == 1e-2 and [r.lr for r in grid] == tried
    run, tried = run_at(loss)
    best, grid = pick_rate(run, (1e-4, 3e-4, 1e-3), extensions=3)  # the third step up is worse: 1e-2 is interior
    assert tried == [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2] and best.lr == 1e-2
    run, tried = run_at(loss)
    best, _ = pick_rate(run, (3e-3, 1e-2, 3e-2))  # interior at once: nothing more runs
    assert tried == [3e-3, 1e-2, 3e-2] and best.lr == 1e-2


def test_script_fills_resumes_and_verifies(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MTLIB_PROFILE", "smoke")
    monkeypatch.setattr(script, "EXTENSIONS", 1)  # one step past an edge at most: fewer runs, the same rule
    path = tmp_path / "store.jsonl"
    argv = ["--store", str(path), "--budgets", "1", "--methods", "BitFit"]
    assert script.main(argv) == 0
    stored = Store(path)
    runs = [r["key"] for r in stored if r["key"]["technique"] != "probe"]
    losses = {k["lr"]: stored.get(k)["values"]["val_loss"] for k in runs if k["seed"] == 0}
    chosen = {k["lr"] for k in runs if k["seed"] != 0}
    first = {lr: losses[lr] for lr in METHODS["BitFit"].rates}
    edge = rate_rule(first)[1]  # the grid grows past its edge when the first three choose an edge
    assert set(losses) == set(first) | ({edge} if edge else set())
    assert chosen == {min(losses, key=losses.get)}  # the rate rule, on the validation loss
    assert sorted(k["seed"] for k in runs if k["lr"] in chosen) == [0, 1, 2]
    assert [r["key"]["technique"] for r in stored].count("probe") == 1

    capsys.readouterr()
    assert script.main(argv) == 0  # resumes: nothing left to run
    assert "0 computed now" in capsys.readouterr().out and len(Store(path)) == len(stored)

    records = [json.loads(line) for line in path.read_text().splitlines()]
    picked = random.Random(0).sample(sorted(records, key=lambda r: r["id"]), 2)  # what --verify 2 re-runs
    picked[0]["values"]["test_accuracy"] += 0.5  # a stored value that the run does not reproduce
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert script.main(["--store", str(path), "--verify", "2"]) == 1
    out = capsys.readouterr().out
    assert "identical" in out and "DIFFERS in test_accuracy" in out and "1 of 2 re-runs identical" in out


def test_methods_cover_every_technique():
    from mtlib.tuning import TECHNIQUES

    used = {m.technique for m in METHODS.values()}
    assert set(TECHNIQUES) <= used | {"layerwise"} and {"full", "discriminative", "gradual"} <= used
    assert all(len(m.rates) >= 3 for m in METHODS.values()) and PROBE.name not in METHODS
    assert {m.config.get("use_dora") for m in METHODS.values()} >= {True}
    assert leaderboard.SEEDS == (0, 1, 2)
