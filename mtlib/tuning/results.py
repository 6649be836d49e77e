"""Reading the results store (chapter 17; chapters 06-11 read their method's rows).

The store (`mtlib.store`) holds one record per run. This module groups them as chapter 17 reads them: for every
method and step budget, the first seed's validation loss at each rate tried, the rate the book's rule chose (the
lowest validation loss; `rates.rate_rule`), and the seeds run at that rate. Only records of the methods as
`leaderboard.METHODS` defines them now, of the current run format and of one profile are read.

    found = cells(Store())                      # {(method, steps): Cell}
    summary(found)                              # one row per method and budget
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..store import SHIPPED, Store
from .leaderboard import METHODS, PROBE, RUN_FORMAT, SEEDS
from .rates import rate_rule

REFERENCE = "full fine-tuning"
STEP_TIMES = SHIPPED.with_name("step_times.json")


@dataclass
class Cell:
    """One method at one step budget."""

    method: str
    steps: int
    losses: dict[float, float] = field(default_factory=dict)  # the first seed's validation loss at each rate tried
    tried: dict[float, dict] = field(default_factory=dict)  # the first seed's values at each rate tried
    lr: float | None = None  # the rate the rule chose (None for the probe, which has no rate)
    runs: list[dict] = field(default_factory=list)  # the values of each seed at that rate, in seed order

    @property
    def complete(self) -> bool:
        return len(self.runs) == (1 if self.method == PROBE.name else len(SEEDS))

    @property
    def at_edge(self) -> bool:
        """The chosen rate is still the smallest or the largest tried (the script grows a grid at most four times)."""
        return self.lr is not None and rate_rule(self.losses)[1] is not None

    def values(self, name: str) -> np.ndarray:
        return np.array([run[name] for run in self.runs], dtype=float)

    def correct(self) -> np.ndarray:
        """Per-sentence test correctness, one row per seed."""
        return np.array([[int(c) for c in run["test_correct"]] for run in self.runs])


def seeds_and_sentences(correct_a: np.ndarray, correct_b: np.ndarray, draws: int = 2000, seed: int = 0) -> dict:
    """Accuracy of a minus b on the same test sentences, with a 95% bootstrap interval that resamples both sources of
    noise: each method's seeds (with replacement, independently) and the sentences (together, so that the pairing
    still removes each sentence's own difficulty). `task.paired_difference` resamples the sentences only, which is
    too narrow when one seed of a method behaves unlike the others. Rows are seeds, columns sentences."""
    a, b = np.atleast_2d(correct_a).astype(float), np.atleast_2d(correct_b).astype(float)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"The two methods were scored on different test sets ({a.shape[1]} and {b.shape[1]} "
                         "sentences): compare runs of the same task.")
    rng = np.random.default_rng(seed)
    # each draw's seeds, as how often each seed was drawn: the per-sentence mean over them is one matrix product
    per_draw_a = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=draws) @ a / len(a)  # (draws, sentences)
    per_draw_b = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=draws) @ b / len(b)
    sentences = rng.integers(0, a.shape[1], size=(draws, a.shape[1]))
    means = np.take_along_axis(per_draw_a - per_draw_b, sentences, axis=1).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": float(a.mean() - b.mean()), "low": float(low), "high": float(high)}


def current(key: dict, profile: str) -> bool:
    """Whether a record's key describes a method as METHODS defines it now, in the current run format."""
    method = METHODS.get(key["method"], PROBE if key["method"] == PROBE.name else None)
    if method is None or key["profile"] != profile or key["versions"].get("run_format") != RUN_FORMAT:
        return False
    return method is PROBE or key["config"] == method.full_config()


def cells(store: Store | None = None, profile: str = "local") -> dict[tuple[str, int], Cell]:
    """The store's records grouped by (method, steps), each with its chosen rate and the seeds run at it."""
    store = store if store is not None else Store()
    records = [r for r in store if current(r["key"], profile)]
    found: dict[tuple[str, int], Cell] = {}
    for record in records:
        key = record["key"]
        cell = found.setdefault((key["method"], key["steps"]), Cell(key["method"], key["steps"]))
        if key["lr"] is not None and key["seed"] == SEEDS[0]:
            cell.losses[key["lr"]] = record["values"]["val_loss"]
            cell.tried[key["lr"]] = record["values"]
    for cell in found.values():
        if cell.losses:
            cell.lr = rate_rule(cell.losses)[0]
    for record in sorted(records, key=lambda r: r["key"]["seed"]):
        key = record["key"]
        cell = found[(key["method"], key["steps"])]
        if key["lr"] == cell.lr:
            cell.runs.append(record["values"])
    return found


CONVERGED = 400  # full fine-tuning's test accuracy stops rising here (chapter 17): the budget the goals are judged at
GOALS = {"LoRA r=8, query and value": (99, 0.5), "BitFit": (97, 0.2), "Houlsby adapters, m=64": (99, 3.0),
         "Pfeiffer adapters, m=64": (99, 3.0)}  # method: (% of full fine-tuning's accuracy, at most % trainable)


def goal(found: dict, method: str) -> dict | None:
    """The book's goal for `method` (`GOALS`) judged at the converged budget, as chapter 17 judges it: **met** when the
    whole 95% interval of its difference from full fine-tuning (over seeds and sentences) lies above the shortfall the
    goal allows and its trainable share is within the goal's, **missed** when the interval lies below it or the share
    is too large, **not decided** otherwise. None while the store lacks the cell."""
    share_goal, trainable_goal = GOALS[method]
    cell, full = found.get((method, CONVERGED)), found.get((REFERENCE, CONVERGED))
    if cell is None or full is None or not (cell.complete and full.complete):
        return None
    full_mean = full.values("test_accuracy").mean()
    gap = seeds_and_sentences(cell.correct(), full.correct())
    allowed = -(1 - share_goal / 100) * full_mean  # the shortfall the goal allows, as a difference in accuracy
    trainable = 100 * cell.runs[0]["trainable"] / cell.runs[0]["total"]
    fits = trainable <= trainable_goal
    verdict = ("met" if gap["low"] >= allowed and fits else "missed" if gap["high"] < allowed or not fits
               else "not decided")
    return {"share": 100 * cell.values("test_accuracy").mean() / full_mean, "share goal": share_goal,
            "trainable %": trainable, "trainable goal": trainable_goal, "allowed": allowed, **gap, "verdict": verdict}


def goal_sentence(found: dict, method: str) -> dict[str, str]:
    """`goal`'s verdict as the clause that chapters 07-09 glue after "<method> ...", in English and Chinese."""
    judged = goal(found, method)
    if judged is None:
        return {"en": f"is not judged yet: the store's {CONVERGED}-step level is not complete",
                "zh": f"是否达到，目前尚无定论：结果库中 {CONVERGED} 步这一档尚未跑完"}
    share = judged["share"]
    return {"en": {"met": "meets it", "missed": "misses it", "not decided": "is not decided on the interval"}[
                judged["verdict"]] + f" ({share:.1f}% of full fine-tuning)",
            "zh": {"met": "达到了这一目标", "missed": "没有达到这一目标", "not decided": "是否达到，按区间尚无定论"}[
                judged["verdict"]] + f"（为全参数微调的 {share:.1f}%）"}


def budgets(found: dict) -> list[int]:
    """The step budgets at which every method has all its seeds."""
    methods = {m for m, _ in found if m != PROBE.name}
    steps = sorted({s for m, s in found if m != PROBE.name})
    return [s for s in steps if all((m, s) in found and found[(m, s)].complete for m in methods)]


def summary(found: dict, reference: str = REFERENCE) -> pd.DataFrame:
    """One row per method and budget: the chosen rate, test accuracy over the seeds (and over the seeds after the
    first, whose rate was not chosen on their own runs), its share of the reference's at the same budget, the paired
    difference from the reference and from the probe with 95% intervals over seeds and sentences
    (`seeds_and_sentences`), the trainable parameters, forgetting (TREC probe points lost), memory and saved size."""
    probe = found.get((PROBE.name, 0))
    rows = []
    for (method, steps), cell in sorted(found.items(), key=lambda item: (item[0][1], list(METHODS).index(item[0][0])
                                                                          if item[0][0] in METHODS else -1)):
        if not cell.complete or method == PROBE.name:
            continue
        test, ref = cell.values("test_accuracy"), found.get((reference, steps))
        row = {"method": method, "steps": steps, "lr": cell.lr, "at edge": cell.at_edge, "seeds": len(cell.runs),
               "test accuracy": test.mean(), "± sd": test.std(ddof=1), "later seeds": test[1:].mean(),
               "trainable": int(cell.runs[0]["trainable"]),
               "trainable %": 100 * cell.runs[0]["trainable"] / cell.runs[0]["total"],
               "forgetting": cell.values("forgetting").mean(), "forgetting sd": cell.values("forgetting").std(ddof=1),
               "peak MiB": cell.values("peak_mib").mean(), "saved MiB": cell.runs[0]["saved_bytes"] / 2**20}
        if ref is not None and ref.complete and method != reference:
            paired = seeds_and_sentences(cell.correct(), ref.correct())
            row.update({"% of full": 100 * test.mean() / ref.values("test_accuracy").mean(),
                        "vs full": 100 * paired["difference"], "low": 100 * paired["low"],
                        "high": 100 * paired["high"]})
        if probe is not None:
            vs_probe = seeds_and_sentences(cell.correct(), probe.correct())
            row.update({"vs probe": 100 * vs_probe["difference"], "probe low": 100 * vs_probe["low"],
                        "probe high": 100 * vs_probe["high"]})
        rows.append(row)
    return pd.DataFrame(rows)


def against_controls(found: dict, method: str, controls=(REFERENCE, "head only")) -> pd.DataFrame:
    """One method against the controls at every stored budget (chapters 06-11, "At a longer budget"): test accuracy
    (mean ± sd over the seeds) of the method, each control and the frozen probe, and the method's paired difference
    from each, in points with its 95% interval over seeds and sentences."""
    probe = found.get((PROBE.name, 0))
    rows = {}
    for steps in sorted(s for m, s in found if m == method and found[(m, s)].complete):
        cell = found[(method, steps)]
        row = {method: _mean_sd(cell)}
        for other in (*controls, PROBE.name):
            against = probe if other == PROBE.name else found.get((other, steps))
            if against is None or not against.complete or other == method:
                continue
            row[other] = _mean_sd(against)
            paired = seeds_and_sentences(cell.correct(), against.correct())
            row[f"vs {other}"] = (f"{100 * paired['difference']:+.1f} [{100 * paired['low']:+.1f}, "
                                  f"{100 * paired['high']:+.1f}]")
        rows[steps] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("steps")


def _mean_sd(cell: Cell) -> str:
    test = cell.values("test_accuracy")
    return f"{test.mean():.3f}" + (f" ± {test.std(ddof=1):.3f}" if len(test) > 1 else "")


def step_times(path: Path = STEP_TIMES, what: str = "seconds_per_step") -> dict[str, float]:
    """Seconds per optimiser step of each method (or, with what="inference_seconds_per_batch", per forward pass over
    a test batch with the module in place), measured side by side on an idle machine (`--time`): the median of the
    rounds. Empty when not measured yet."""
    if not Path(path).exists():
        return {}
    measured = json.loads(Path(path).read_text(encoding="utf-8")).get(what, {})
    return {method: float(np.median(times)) for method, times in measured.items()}
