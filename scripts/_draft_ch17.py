"""Draft generator for chapter 17 (EN). Writes book/en/17-everything-on-one-task.ipynb from the cells below.
Removed before the chapter lands on main."""
import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NAME = "17-everything-on-one-task"
COLAB = f"https://colab.research.google.com/github/model-migration/model-migration-book/blob/main/book/en/{NAME}.ipynb"
cells = []


def md(text):
    cells.append(new_markdown_cell(text.strip("\n")))


def code(text):
    cells.append(new_code_cell(text.strip("\n")))


md(f"""
# 17. Everything on one task: which method, and how long?

Part II trained each method for 50 steps on 800 sentences, so that a chapter runs in minutes on a laptop. At that
budget almost nothing separates from a frozen probe, and the question a practitioner brings to this book (which
method, and how long to train it) stays open. This chapter answers it from a **results store**: every technique of
Part II and its controls (full fine-tuning, the head alone, the frozen probe), trained on the whole SST-2 splits
({{glue:text}}`ch17_n_train:,` training, {{glue:text}}`ch17_n_val:,` validation and {{glue:text}}`ch17_n_test:,` test
sentences) for 50, 200 and 400 steps, each with its learning rate
chosen by one rule and then run with three seeds, and each run measured for what it costs and for what the body
forgot. The runs took hours of CPU, computed once by `make leaderboard` and shipped inside mtlib, so this chapter reads
them in seconds, on any machine, and re-runs one of them to show that the store holds what the code computes.

[![Open In Colab](../_static/colab-badge.svg)]({COLAB}) · [中文版](../zh/{NAME}.ipynb)
""")

code("""
import sys
if "google.colab" in sys.modules:  # in Colab: install mtlib (everything else is preinstalled)
    !pip install -q "mtlib @ git+https://github.com/model-migration/model-migration-book@main"

import mtlib
cfg = mtlib.setup()
""")

md("""
## 17.1 The store: one record per run

A record is one training run. Its **key** holds everything that determines the result: the method and its whole
configuration, the learning rate, the seed, the step budget, the training recipe, the data (the hash of each file and
the sample), the forgetting probe's settings, the checkpoint and the hash of its files, the profile, the precision, the
device, the number of CPU threads and the instruction set, the versions of the libraries, and a run format that is
bumped by hand whenever a change to the code changes a result. Its **values** are what the run measured; its
**provenance** says where and when it ran. A record is looked up by its whole key, so a result computed under other
conditions is never silently reused.
""")

code("""
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from mtlib.store import Store, StoreError, flat
from mtlib.tuning import leaderboard, results

store = Store()  # the records shipped inside mtlib: mtlib/results/leaderboard.jsonl
found = results.cells(store, profile="local")
example = next(r for r in store if r["key"]["method"] == "LoRA r=8, query and value" and r["key"]["seed"] == 1)
mtlib.glue("ch17_records", len(store))
mtlib.glue("ch17_cpu", example["provenance"]["cpu"])
mtlib.glue("ch17_threads", example["key"]["threads"])
for split, name in (("train", "ch17_n_train"), ("validation", "ch17_n_val"), ("test", "ch17_n_test")):
    mtlib.glue(name, example["key"]["data"][split])
mtlib.glue("ch17_val_step", 100 / example["key"]["data"]["validation"])
shown = {name: value for name, value in example["values"].items() if name not in ("test_correct", "train_loss")}
shown["test_correct"] = example["values"]["test_correct"][:40] + "..."
shown["train_loss"] = f"{len(example['values']['train_loss'])} values, one per step"
print(f"{len(store)} records. One of them, run on {example['provenance']['date']} ({example['provenance']['cpu']}):")
pd.concat({"key": pd.Series({k: json.dumps(v) for k, v in flat(example["key"]).items()}),
           "values": pd.Series({k: str(v) for k, v in shown.items()})}).to_frame("").style
""")

md("""
The store holds {glue:text}`ch17_records` records, all computed on one {glue:text}`ch17_cpu` machine with
{glue:text}`ch17_threads` CPU threads in float32. `test_correct` keeps, for every test sentence, whether the run
classified it right: two methods can then be compared on the same sentences (section 17.4). Ask the store for the same
run under another key, say with another version of torch, and it refuses, naming what differs:
""")

code("""
other = json.loads(json.dumps(example["key"]))
other["versions"]["torch"] = "2.4.0+cu121"
other["device"] = "cuda"
try:
    store.require(other)
except StoreError as err:
    print(err)
""")

md("""
## 17.2 One rule for the learning rate

A comparison of methods is only as fair as the learning rate each one gets. Every row of the store follows one rule,
the book's: train the first seed at each rate of a grid of at least three (half a decade apart), keep the rate with
the **lowest validation loss**, and when that rate sits at an edge of the grid, try the next rate beyond it before the
choice stands; then run the other seeds at the chosen rate. The validation loss, not the accuracy, because on {glue:text}`ch17_n_val:,`
sentences the accuracy moves in steps of {glue:text}`ch17_val_step:.2f` points and ties are common; the loss sees a confident wrong answer that
the accuracy does not. Written out, as `mtlib.tuning.leaderboard` runs it:
""")

code('''
def next_rate(rate: float, up: bool) -> float:
    """The next rate on the book's half-decade grid (1, 3, 10, 30, ... times a power of ten), up or down."""
    exponent = int(np.floor(np.log10(rate) + 1e-9))
    mantissa = round(rate / 10 ** exponent)
    if mantissa not in (1, 3):
        raise ValueError(f"{rate} is not on the half-decade grid (1 or 3 times a power of ten).")
    if up:
        return float(f"{3 * 10 ** exponent:.0e}") if mantissa == 1 else float(f"{10 ** (exponent + 1):.0e}")
    return float(f"{10 ** exponent:.0e}") if mantissa == 3 else float(f"{3 * 10 ** (exponent - 1):.0e}")


def rate_rule(losses: dict[float, float]) -> tuple[float, float | None]:
    """The book's rate rule: the rate with the lowest validation loss. When it sits at an edge of the rates tried,
    also the next rate beyond that edge, to try before the choice stands (None when the choice is interior)."""
    finite = {lr: loss if np.isfinite(loss) else np.inf for lr, loss in losses.items()}  # a diverged run never wins
    best = min(finite, key=finite.get)
    if len(losses) > 1 and best == min(losses):
        return best, next_rate(best, up=False)
    if len(losses) > 1 and best == max(losses):
        return best, next_rate(best, up=True)
    return best, None
''')

md("""
The rates each method tried at each budget, with the first seed's validation loss; the chosen one is starred. Where
the first grid's best sat at an edge, the grid grew (the column "grown"):
""")

code("""
METHODS = [m for m in leaderboard.METHODS if any((m, s) in found for s in (50, 200, 400))]
BUDGETS = sorted({steps for (method, steps) in found if method in METHODS})
rows = []
for (method, steps), cell in sorted(found.items(), key=lambda item: (item[0][1], METHODS.index(item[0][0])
                                                                      if item[0][0] in METHODS else -1)):
    if cell.lr is None:
        continue
    tried = "  ".join(f"{lr:.0e}: {loss:.3f}" + ("*" if lr == cell.lr else "") for lr, loss in sorted(cell.losses.items()))
    rows.append({"method": method, "steps": steps, "rates tried (validation loss)": tried,
                 "grown": len(cell.losses) - len(leaderboard.METHODS[method].rates), "chosen": f"{cell.lr:.0e}",
                 "rule agrees": rate_rule(cell.losses)[0] == cell.lr})
rates = pd.DataFrame(rows)
mtlib.glue("ch17_grown", int((rates["grown"] > 0).sum()))
mtlib.glue("ch17_cells", len(rates))
rates.style.hide(axis="index")
""")

md("""
In {glue:text}`ch17_grown` of the {glue:text}`ch17_cells` method-and-budget cells the first grid's best sat at its
edge and the grid grew. The rates move with the budget: a longer run takes a smaller rate, because the same rate
applied for more steps moves the weights further.
""")

md("""
## 17.3 Accuracy against budget

Test accuracy at each budget, the mean of three seeds at the chosen rate with its standard deviation; the frozen
probe (a logistic regression on the pretrained body's mean-pooled states, its $C$ chosen on the validation split)
is the horizontal line every trained method has to clear.
""")

code("""
summary = results.summary(found)
probe = found[(leaderboard.PROBE.name, 0)]
probe_accuracy = mtlib.glue("ch17_probe", probe.runs[0]["test_accuracy"])
wide = summary.pivot(index="method", columns="steps", values="test accuracy").reindex(METHODS)
spread = summary.pivot(index="method", columns="steps", values="± sd").reindex(METHODS)
cells_text = wide.map(lambda a: f"{a:.3f}") + " ± " + spread.map(lambda s: f"{s:.3f}")
cells_text.columns = [f"{steps} steps" for steps in cells_text.columns]
cells_text
""")

code("""
GROUPS = {"controls and layer-wise": ["full fine-tuning", "head only", "discriminative rates", "gradual unfreezing"],
          "bias, adapters, prompts": ["BitFit", "Houlsby adapters, m=64", "Pfeiffer adapters, m=64",
                                      "prompt tuning, 20 tokens", "P-tuning v2, 20 tokens"],
          "low-rank": ["full fine-tuning", "LoRA r=8, query and value", "LoRA r=8, every linear layer",
                       "DoRA r=8, query and value"]}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
for ax, (title, names) in zip(axes, GROUPS.items()):
    for name in names:
        rows = summary[summary["method"] == name]
        line, = ax.plot(rows["steps"], rows["test accuracy"], marker="o", label=name)
        ax.fill_between(rows["steps"], rows["test accuracy"] - rows["± sd"], rows["test accuracy"] + rows["± sd"],
                        color=line.get_color(), alpha=0.2)
    ax.axhline(probe_accuracy, color="grey", linestyle="--", label="frozen probe")
    ax.set(xscale="log", xticks=BUDGETS, xticklabels=BUDGETS, xlabel="optimiser steps (batches of 32)", title=title)
    ax.legend(fontsize=8)
axes[0].set_ylabel("test accuracy (3 seeds, ± sd)")
plt.tight_layout()
plt.show()
""")

md("""
## 17.4 How close to full fine-tuning, and when

Two seeds' spread says how much a method's accuracy moves from run to run; whether one method beats another is a
question about the same test sentences. The paired difference from full fine-tuning at the same budget, with a 95%
bootstrap interval over the {glue:text}`ch17_n_test:,` test sentences (each sentence's correctness averaged over the seeds, as in chapter
07), and the same against the frozen probe:
""")

code("""
from mtlib.tuning.task import paired_difference


def interval(difference, low, high):
    return f"{difference:+.1f} [{low:+.1f}, {high:+.1f}]"


paired = summary.assign(**{
    "vs full fine-tuning (points)": [interval(*r) for r in summary[["vs full", "low", "high"]].itertuples(index=False)],
    "vs frozen probe (points)": [interval(*r) for r in
                                 summary[["vs probe", "probe low", "probe high"]].itertuples(index=False)]})
paired.pivot(index="method", columns="steps", values="vs full fine-tuning (points)").reindex(METHODS)
""")

code("""
paired.pivot(index="method", columns="steps", values="vs frozen probe (points)").reindex(METHODS)
""")

md("""
Full fine-tuning itself stops rising: at twice the longest budget, 800 steps (3.7 epochs), it reaches
{glue:text}`ch17_full_800:.3f` against {glue:text}`ch17_full_400:.3f` at 400 (paired difference
{glue:text}`ch17_plateau_gap:+.1f` points, 95% interval {glue:text}`ch17_plateau_low:+.1f` to
{glue:text}`ch17_plateau_high:+.1f`). That is the reference for "how close": the budget at which each method first
reaches 99% of full fine-tuning's plateau.
""")

code("""
full_800 = found.get(("full fine-tuning", 800))
plateau = full_800.values("test_accuracy").mean() if full_800 and full_800.complete else wide.loc["full fine-tuning"].max()
gap = paired_difference(full_800.correct(), found[("full fine-tuning", 400)].correct()) \\
    if full_800 and full_800.complete else {"difference": np.nan, "low": np.nan, "high": np.nan}
mtlib.glue("ch17_full_800", plateau)
mtlib.glue("ch17_full_400", wide.loc["full fine-tuning", 400])
for name, value in gap.items():
    mtlib.glue(f"ch17_plateau_{'gap' if name == 'difference' else name}", 100 * value)


def first_budget(accuracies: pd.Series, target: float):
    \"\"\"The smallest budget whose mean accuracy reaches `target`, or None.\"\"\"
    reached = accuracies[accuracies >= target]
    return int(reached.index.min()) if len(reached) else None


reach = pd.DataFrame({"best % of plateau": 100 * wide.max(axis=1) / plateau,
                      "steps to reach 99%": [first_budget(wide.loc[m], 0.99 * plateau) for m in wide.index]})
reach["steps to reach 99%"] = reach["steps to reach 99%"].map(lambda s: f"{s}" if s else f"not by {max(BUDGETS)}")
reach.style.format({"best % of plateau": "{:.1f}"})
""")

md("""
## 17.5 What each method costs

Accuracy is half the answer; the other half is what a method asks of the machine. Trainable parameters decide the
size of what a task adds to a shared model and the optimiser's memory; the peak memory of a training run and the time
of a step decide whether it fits and how long it takes. Step times are measured apart from the store's runs, side by
side in one process on an idle machine (`make leaderboard ARGS=--time`), because the runs themselves may have shared
the CPU with other work.
""")

code("""
times = results.step_times()
top = summary[summary["steps"] == max(BUDGETS)].set_index("method").reindex(METHODS)
cost = pd.DataFrame({"test accuracy": top["test accuracy"], "trainable": top["trainable"],
                     "trainable %": top["trainable %"], "peak MiB": top["peak MiB"], "saved MiB": top["saved MiB"],
                     "s / step": pd.Series(times).reindex(METHODS)})
cost["minutes to 400 steps"] = cost["s / step"] * max(BUDGETS) / 60
cost.style.format({"test accuracy": "{:.3f}", "trainable": "{:,}", "trainable %": "{:.2f}", "peak MiB": "{:.0f}",
                   "saved MiB": "{:.1f}", "s / step": "{:.2f}", "minutes to 400 steps": "{:.1f}"})
""")

code("""
fig, ax = plt.subplots(figsize=(8, 4.5))
for name in METHODS:
    if name not in times:
        continue
    rows = summary[summary["method"] == name]
    ax.plot(rows["steps"] * times[name] / 60, rows["test accuracy"], marker="o", label=name)
ax.axhline(probe_accuracy, color="grey", linestyle="--", label="frozen probe")
ax.set(xscale="log", xlabel="minutes of training on this CPU (steps x measured seconds per step)",
       ylabel="test accuracy (3 seeds)", title="Accuracy against training time: 50, 200 and 400 steps")
ax.legend(fontsize=7, ncol=2)
plt.show()
""")

code("""
fig, ax = plt.subplots(figsize=(7, 4.5))
for name, row in top.iterrows():
    ax.errorbar(row["trainable"], row["test accuracy"], yerr=row["± sd"], marker="o", capsize=3)
    ax.annotate(name, (row["trainable"], row["test accuracy"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
ax.axhline(probe_accuracy, color="grey", linestyle="--", label="frozen probe (0 trainable)")
ax.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel=f"test accuracy at {max(BUDGETS)} steps",
       title="Accuracy against trainable parameters")
ax.legend(fontsize=8)
plt.show()
""")

md("""
## 17.6 Forgetting

A method that changes the body can lose what the body knew. The store measures it the same way for every run
(`mtlib.forgetting`, and chapters 12 and 13 reuse it): a linear probe for another task, question classification
(TREC, six classes), fitted on the body's mean-pooled states before and after training, with its $C$ chosen once on
the pretrained body. Forgetting is the probe's test accuracy before minus after, in points. A method that leaves the
body untouched forgets nothing once its module is removed; the store measures every method with its module in place,
which is what a deployed model carries. With 500 TREC test questions, one run's measurement has a standard error of
about 1.6 points.
""")

code("""
fig, axes = plt.subplots(1, 2, figsize=(13, 4.3))
for name, row in top.iterrows():
    axes[0].errorbar(row["forgetting"], row["test accuracy"], xerr=row["forgetting sd"], yerr=row["± sd"],
                     marker="o", capsize=3)
    axes[0].annotate(name, (row["forgetting"], row["test accuracy"]), fontsize=7, xytext=(4, 4),
                     textcoords="offset points")
axes[0].axvline(0, color="grey", linewidth=0.8)
axes[0].set(xlabel="forgetting (TREC probe points lost)", ylabel="SST-2 test accuracy",
            title=f"At the chosen rates, {max(BUDGETS)} steps (3 seeds)")
full_grid = pd.DataFrame([{"steps": steps, "lr": record["key"]["lr"], "forgetting": record["values"]["forgetting"]}
                          for record in store for steps in [record["key"]["steps"]]
                          if record["key"]["method"] == "full fine-tuning" and record["key"]["seed"] == 0])
for steps, rows in full_grid.groupby("steps"):
    rows = rows.sort_values("lr")
    axes[1].plot(rows["lr"], rows["forgetting"], marker="o", label=f"{steps} steps")
axes[1].axhline(0, color="grey", linewidth=0.8)
axes[1].set(xscale="log", xlabel="learning rate", ylabel="forgetting (points)",
            title="Full fine-tuning, first seed, every rate tried")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()
worst = full_grid.loc[full_grid["forgetting"].idxmax()]
mtlib.glue("ch17_worst_forgetting", worst["forgetting"])
mtlib.glue("ch17_worst_lr", f"{worst['lr']:.0e}".replace("e-0", "e-"))
mtlib.glue("ch17_worst_steps", int(worst["steps"]))
""")

md("""
## 17.7 Our numbers beside the published ones

The published numbers come from larger models trained for much longer; they set the expectation, not a target our
CPU runs must hit. What should carry over is the shape: how close each method comes to full fine-tuning, and at what
share of the parameters.
""")

code("""
def share(method):
    return 100 * wide.loc[method].max() / plateau


anchors = pd.DataFrame([
    {"method": "LoRA r=8, query and value", "published": "RoBERTa-base SST-2: LoRA 95.1 ± 0.2 with 0.3M parameters vs 94.8 full (Hu et al.)",
     "ours: % of full": share("LoRA r=8, query and value"), "ours: trainable %": top.loc["LoRA r=8, query and value", "trainable %"]},
    {"method": "Houlsby adapters, m=64", "published": "BERT-large GLUE: within 0.4 points of full at 3.6% of the parameters (Houlsby et al.)",
     "ours: % of full": share("Houlsby adapters, m=64"), "ours: trainable %": top.loc["Houlsby adapters, m=64", "trainable %"]},
    {"method": "BitFit", "published": "BERT GLUE: competitive with full fine-tuning, better with little data (Ben Zaken et al.)",
     "ours: % of full": share("BitFit"), "ours: trainable %": top.loc["BitFit", "trainable %"]},
    {"method": "prompt tuning, 20 tokens", "published": "T5: far behind full below ~1B parameters, on par at 11B (Lester et al.)",
     "ours: % of full": share("prompt tuning, 20 tokens"), "ours: trainable %": top.loc["prompt tuning, 20 tokens", "trainable %"]},
    {"method": "P-tuning v2, 20 tokens", "published": "BERT/RoBERTa-large: comparable to full across scales (Liu et al. 2022)",
     "ours: % of full": share("P-tuning v2, 20 tokens"), "ours: trainable %": top.loc["P-tuning v2, 20 tokens", "trainable %"]},
]).set_index("method")
anchors.style.format({"ours: % of full": "{:.1f}", "ours: trainable %": "{:.2f}"})
""")

md("""
## 17.8 The goals, measured

Before the store was filled we set three goals, at the budget where full fine-tuning has converged and on three-seed
means: LoRA at least 99% of full fine-tuning with at most 0.5% of the parameters trainable; BitFit at least 97% with
at most 0.2%; adapters at least 99% with at most 3%.
""")

code("""
GOALS = [("LoRA r=8, query and value", 99, 0.5), ("BitFit", 97, 0.2), ("Houlsby adapters, m=64", 99, 3.0),
         ("Pfeiffer adapters, m=64", 99, 3.0)]
goals = pd.DataFrame([{"method": m, "goal: % of full": pct, "goal: at most % trainable": budget,
                       "measured: % of full": 100 * top.loc[m, "test accuracy"] / plateau,
                       "measured: % trainable": top.loc[m, "trainable %"]} for m, pct, budget in GOALS]).set_index("method")
goals["met"] = (goals["measured: % of full"] >= goals["goal: % of full"]) & \\
    (goals["measured: % trainable"] <= goals["goal: at most % trainable"])
for method, row in goals.iterrows():
    slug = method.split()[0].split(",")[0].lower()
    mtlib.glue(f"ch17_goal_{slug}_pct", row["measured: % of full"])
    mtlib.glue(f"ch17_goal_{slug}_trainable", row["measured: % trainable"])
goals.style.format({"measured: % of full": "{:.1f}", "measured: % trainable": "{:.2f}"})
""")

md("""
## 17.9 One record, re-run

The store is only worth reading if its records are what the code computes. Under the `local` profile, on a machine
whose key matches the store's (this CPU's instruction set, two threads, the same library versions), the cell below
trains one stored run again and compares every value except time and memory exactly: CPU runs here are deterministic.
Elsewhere (Colab's GPU, another CPU) the key differs, the store says which fields, and the run is shown beside the
stored one instead. Under `smoke` it runs the whole pipeline on a tiny configuration into a temporary store.
""")

code("""
import tempfile
from pathlib import Path

board = leaderboard.Leaderboard(cfg)
bitfit = leaderboard.METHODS["BitFit"]
if cfg.profile == "smoke":  # the whole pipeline on a tiny configuration, into a temporary store
    scratch = Store(Path(tempfile.mkdtemp()) / "store.jsonl")
    key = board.key(bitfit, lr=bitfit.rates[1], seed=0, steps=3)
    stored = scratch.add(key, board.run(key), leaderboard.provenance("chapter 17 (smoke)"))
else:  # a stored run: BitFit at 50 steps, at the rate the rule chose, second seed
    key = board.key(bitfit, lr=found[("BitFit", 50)].lr, seed=1, steps=50)
    stored = store.get(key)
    if stored is None:  # computed elsewhere (another device, profile or library version): say what differs
        try:
            store.require(key)
        except StoreError as err:
            print(err)
        stored = next(r for r in store if all(r["key"][f] == key[f] for f in ("method", "lr", "seed", "steps")))
matched = stored["key"] == key
again = board.run(key)
differ = leaderboard.same_values(stored["values"], again)
print(("the same key: " if matched else "another key: ")
      + ("identical in every value but time and memory" if not differ else f"differs in {', '.join(differ)}"))
live = pd.DataFrame({"stored": {k: stored["values"][k] for k in ("val_loss", "test_accuracy", "forgetting")},
                     "run now": {k: again[k] for k in ("val_loss", "test_accuracy", "forgetting")}})
live
""")

md("""
## 17.10 Choosing a method

What the measurements and the literature say, by the constraint that decides:

- **Nothing trains yet, or you need a baseline in minutes.** The frozen probe: no gradient through the body, a
  logistic regression on cached features. Every trained method must beat it by more than its seed spread before it
  earns its cost.
- **Memory is the limit (a model that barely fits).** LoRA on the attention projections, or QLoRA where the frozen
  weights must shrink too (chapter 09): the optimiser state is that of the few trainable parameters.
- **Many tasks on one backbone.** Anything that leaves the body untouched stores one small file per task: LoRA, BitFit,
  adapters, prompts. LoRA and BitFit merge into the weights (no inference cost); adapters and prompts add layers or
  tokens at every call.
- **Inference must cost nothing extra.** Full fine-tuning, or LoRA merged into the weights.
- **Few labels.** The probe or BitFit first; methods that change little overfit less (Ben Zaken et al.).
- **The best accuracy, whatever it costs.** Full fine-tuning with its rate chosen, then LoRA on every linear layer,
  which closes most of the remaining gap.

## 17.11 Questions readers ask

- **Which rank and alpha?** Rank 8 on query and value was Hu et al.'s default and is ours; scale $\\alpha/r$ held fixed
  while the rank changes means the learning rate needs choosing again (chapter 09).
- **Which learning rate?** Choose it, every time the method or the budget changes: the chosen rates above span
  several decades, and a rate borrowed from another method can decide the comparison.
- **How many steps?** Until full fine-tuning's validation accuracy stops rising; on this task that was between 400 and
  800 steps of 32 sentences, about two epochs. Parameter-efficient methods starting from zero often need more.
- **Merge or not?** Merge for serving one task (no extra latency); keep the adapter separate to swap tasks on one body.
- **QLoRA's memory?** A 7B model in 4 bits holds about 3.5 GB of weights, against 14 GB in 16 bits; LoRA's optimiser
  state is a few hundred MB at rank 16 on every linear layer.
- **Prompt methods or LoRA?** On small encoders prompt tuning trails far behind (Lester et al. show the gap closing
  only near ten billion parameters); P-tuning v2's prompts at every layer do better.
- **When does full fine-tuning win?** When the task is far from pretraining and data is plentiful; Biderman et al.
  found full fine-tuning learns more on code and mathematics, and LoRA forgets less.
""")

md("""
## Check

The store is complete (every method at every budget with three seeds at its chosen rate), every chosen rate is the
one the rule written out above picks, every value is in range, and the re-run record reproduces its stored values.
""")

code("""
assert all(row["rule agrees"] for _, row in rates.iterrows())
assert all(0 <= r["test_accuracy"] <= 1 and len(r["test_correct"]) == example["key"]["data"]["test"] for c in found.values() for r in c.runs)
assert not matched or not differ, differ  # under the same key, the re-run is the stored run
if cfg.profile != "smoke" and not cfg.rehearsal:
    assert results.budgets(found) == [50, 200, 400], results.budgets(found)  # complete
    assert all(found[(m, s)].complete for m in METHODS for s in (50, 200, 400))
    assert gap["low"] < 0.5 * 100 and gap["high"] > -0.5 * 100  # full fine-tuning has stopped rising
print("all checks passed")
""")

md("""
## Pitfalls

- **A leaderboard without a rate rule.** Methods compared at one shared learning rate rank by how well that rate suits
  them. Choose each method's rate on validation data, say how, and check the choice is not at the grid's edge.
- **Reading the test set twice.** The rate is chosen on the validation loss; the test split is read once per run.
- **One seed.** The seed spread at 50 steps is as large as the differences between methods: three seeds and a paired
  interval before a ranking.
- **A result under another key.** A number from another torch, precision or thread count is another experiment; the
  store refuses it and says why.
- **Timing runs that shared the machine.** Two jobs on two cores halve each other's speed; time steps side by side on
  an idle machine.

## Exercises

1. Add rank 16 on every linear layer to `leaderboard.METHODS` and fill its rows with
   `make leaderboard ARGS="--methods ..."`. Does it close the gap to full fine-tuning at 400 steps?
2. Re-read section 17.4 with the validation accuracy instead of the validation loss as the rate rule's criterion:
   which chosen rates change?
3. Pick the method of section 17.10 for a reader with a 7B model, one 24 GB GPU and four tasks, and justify it with
   numbers from this chapter and chapter 09.

## References

LoRA {cite}`hu2022lora`; DoRA {cite}`liu2024dora`; adapters {cite}`houlsby2019adapters,pfeiffer2021adapterfusion`;
BitFit {cite}`benzaken2022bitfit`; prompt tuning {cite}`lester2021power`; P-tuning v2 {cite}`liu2022ptuning`;
discriminative rates and gradual unfreezing {cite}`howard2018ulmfit`; LoRA against full fine-tuning on forgetting
{cite}`biderman2024lora`; TREC {cite}`li2002trec`; SST-2 {cite}`socher2013sst`.

```{bibliography}
:filter: docname in docnames
```
""")

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"},
                                         "language_info": {"name": "python", "pygments_lexer": "ipython3"}})
nbformat.write(nb, f"book/en/{NAME}.ipynb")
print("wrote", f"book/en/{NAME}.ipynb", len(cells), "cells")
