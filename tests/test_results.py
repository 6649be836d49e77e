"""mtlib.tuning.results: the store read as chapter 17 reads it (synthetic records; nothing is trained)."""
import math

import numpy as np
import pytest

from mtlib.store import Store
from mtlib.tuning import results
from mtlib.tuning.leaderboard import METHODS, PROBE, RUN_FORMAT, SEEDS
from mtlib.tuning.task import paired_difference

N_TEST = 40


def key(method, lr, seed, steps, profile="local", run_format=RUN_FORMAT, config=None):
    m = METHODS.get(method, PROBE)
    return {"method": method, "lr": lr, "seed": seed, "steps": steps, "profile": profile,
            "config": m.full_config() if config is None else config, "versions": {"run_format": run_format}}


def values(val_loss, correct, trainable=10, forgetting=0.0):
    return {"val_loss": val_loss, "test_accuracy": float(np.mean(correct)),
            "test_correct": "".join(map(str, correct)), "trainable": trainable, "total": 1000,
            "forgetting": forgetting, "peak_mib": 100.0, "saved_bytes": 2**20}


def correct(k, rng):
    return (rng.random(N_TEST) < k).astype(int)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    s = Store(tmp_path / "s.jsonl")
    s.add(key(PROBE.name, None, 0, 0), values(math.nan, correct(0.6, rng), trainable=0), {})
    for method, accuracy in (("full fine-tuning", 0.9), ("BitFit", 0.8)):
        rates = METHODS[method].rates
        for lr, loss in zip(rates, (0.5, 0.3, math.nan)):  # the middle rate wins; the largest diverged
            s.add(key(method, lr, 0, 50), values(loss, correct(accuracy, rng)), {})
        for seed in SEEDS[1:]:
            s.add(key(method, rates[1], seed, 50), values(0.31, correct(accuracy, rng)), {})
    # records that must not be read: another profile, an older run format, a config that METHODS no longer has
    s.add(key("BitFit", 1.0, 0, 50, profile="full"), values(0.01, correct(1.0, rng)), {})
    s.add(key("BitFit", 2.0, 0, 50, run_format=RUN_FORMAT - 1), values(0.01, correct(1.0, rng)), {})
    s.add(key("BitFit", 3.0, 0, 50, config={"old": True}), values(0.01, correct(1.0, rng)), {})
    return s


def test_cells_choose_the_rule_rate_and_gather_its_seeds(store):
    found = results.cells(store)
    assert set(found) == {(PROBE.name, 0), ("full fine-tuning", 50), ("BitFit", 50)}
    cell = found[("BitFit", 50)]
    assert cell.lr == METHODS["BitFit"].rates[1] and len(cell.losses) == 3  # nan never wins; the others ignored
    assert cell.complete and not cell.at_edge and len(cell.runs) == len(SEEDS)
    assert cell.correct().shape == (len(SEEDS), N_TEST)
    assert found[(PROBE.name, 0)].complete and found[(PROBE.name, 0)].lr is None
    assert results.budgets(found) == [50]


def test_incomplete_cells_are_left_out(store, tmp_path):
    partial = Store(tmp_path / "p.jsonl")
    for record in store:
        if not (record["key"]["method"] == "BitFit" and record["key"]["seed"] == 2):
            partial.add(record["key"], record["values"], {})
    found = results.cells(partial)
    assert not found[("BitFit", 50)].complete and results.budgets(found) == []
    assert list(results.summary(found)["method"]) == ["full fine-tuning"]


def test_summary_pairs_each_method_with_full_fine_tuning_and_the_probe(store):
    found = results.cells(store)
    row = results.summary(found).set_index("method").loc["BitFit"]
    bitfit, full, probe = found[("BitFit", 50)], found[("full fine-tuning", 50)], found[(PROBE.name, 0)]
    expected = results.seeds_and_sentences(bitfit.correct(), full.correct())
    assert row["vs full"] == pytest.approx(100 * expected["difference"])
    assert row["low"] == pytest.approx(100 * expected["low"]) and row["low"] <= row["vs full"] <= row["high"]
    assert row["vs probe"] == pytest.approx(100 * paired_difference(bitfit.correct(), probe.correct())["difference"])
    assert row["later seeds"] == pytest.approx(bitfit.values("test_accuracy")[1:].mean())
    assert row["% of full"] == pytest.approx(100 * bitfit.values("test_accuracy").mean()
                                             / full.values("test_accuracy").mean())
    assert row["trainable %"] == pytest.approx(1.0) and row["seeds"] == len(SEEDS)


def test_against_controls(store):
    found = results.cells(store)
    table = results.against_controls(found, "BitFit")
    assert list(table.index) == [50] and table.index.name == "steps"
    paired = results.seeds_and_sentences(found[("BitFit", 50)].correct(), found[("full fine-tuning", 50)].correct())
    assert table.loc[50, "vs full fine-tuning"].startswith(f"{100 * paired['difference']:+.1f} [")
    assert f"vs {PROBE.name}" in table and "head only" not in table  # a control the store lacks is left out
    accuracy = found[("BitFit", 50)].values("test_accuracy")
    assert table.loc[50, "BitFit"] == f"{accuracy.mean():.3f} ± {accuracy.std(ddof=1):.3f}"


def test_seeds_and_sentences_widens_when_a_seed_collapses():
    rng = np.random.default_rng(1)
    steady = (rng.random((3, 2000)) < 0.85).astype(int)
    other = (rng.random((3, 2000)) < 0.80).astype(int)
    both = results.seeds_and_sentences(steady, other)
    sentences = paired_difference(steady, other)
    assert both["difference"] == pytest.approx(sentences["difference"])
    assert both["high"] - both["low"] < 1.6 * (sentences["high"] - sentences["low"])  # alike seeds: about as wide
    collapsed = other.copy()
    collapsed[1] = 0  # one seed at chance... here below it: every sentence wrong
    both = results.seeds_and_sentences(steady, collapsed)
    sentences = paired_difference(steady, collapsed)
    assert both["high"] - both["low"] > 3 * (sentences["high"] - sentences["low"])
    assert both["low"] <= both["difference"] <= both["high"]
    with pytest.raises(ValueError, match="different test sets"):
        results.seeds_and_sentences(steady, other[:, :10])


def test_step_times_without_a_measurement(tmp_path):
    assert results.step_times(tmp_path / "absent.json") == {}
