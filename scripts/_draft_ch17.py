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

Part II trained each method live for 50 steps, less than a quarter of an epoch of SST-2's training sentences, so that
a chapter runs in minutes on a laptop. At that budget almost no method pulls ahead of a frozen probe, and the question
a practitioner brings to this book (which method, and how long to train it) stays open. This chapter answers it from a **results store**: every technique of
Part II and its controls (full fine-tuning, the head alone, the frozen probe), trained on the whole SST-2 splits
({{glue:text}}`ch17_n_train:,` training, {{glue:text}}`ch17_n_val:,` validation and {{glue:text}}`ch17_n_test:,` test
sentences) for 50, 200 and 400 steps, each with its learning rate
chosen by one rule and then run with three seeds, and each run measured for what it costs and for what the body
forgot. The runs took {{glue:text}}`ch17_hours:.1f` hours of CPU, computed once by `make leaderboard` and shipped inside mtlib, so this chapter reads
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
mtlib.glue("ch17_hours", sum(r["values"].get("seconds", 0) for r in store) / 3600)
mtlib.glue("ch17_cpus", ", ".join(sorted({r["provenance"]["cpu"] for r in store})))
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
The store holds {glue:text}`ch17_records` records, computed on {glue:text}`ch17_cpus` with
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

A comparison of methods is only as fair as the learning rate each one gets. Every row of the store follows the book's
rule (chapter 06 writes it out as `mtlib.tuning.rates`): train the first seed at each rate of a grid of at least three,
half a decade apart, keep the rate with the **lowest validation loss**, and when that rate sits at an edge of the grid,
try the next rate beyond it before the choice stands; then run the other seeds at the chosen rate. The validation
loss, not the accuracy, because on {glue:text}`ch17_n_val:,` sentences the accuracy moves in steps of
{glue:text}`ch17_val_step:.2f` points and ties are common; the loss also sees how confident the wrong answers are.
""")

code("""
from mtlib.tuning.rates import rate_rule
""")

md("""
The rates each method tried at each budget, with the first seed's validation loss; the chosen one is starred. Where
the first grid's best sat at an edge, the grid grew ("grown": how many rates were added), at most four times:
""")

code("""
METHODS = [m for m in leaderboard.METHODS if any(key[0] == m for key in found)]
BUDGETS = results.budgets(found)  # the budgets at which every method has all its seeds
rows = []
for (method, steps), cell in found.items():
    if cell.lr is None:
        continue
    tried = "  ".join(f"{lr:.0e}: {loss:.3f}" + ("*" if lr == cell.lr else "") for lr, loss in sorted(cell.losses.items()))
    rows.append({"method": method, "steps": steps, "rates tried (validation loss)": tried,
                 "grown": len(set(cell.losses) - set(leaderboard.METHODS[method].rates)),
                 "chosen": f"{cell.lr:.0e}", "at edge": cell.at_edge})
rates = pd.DataFrame(rows).sort_values(["steps", "method"], key=lambda c: c.map(
    lambda v: METHODS.index(v) if v in METHODS else v))
# the rule on the validation accuracy instead of the loss (the first seed; ties go to the smaller rate)
by_accuracy = {(m, s): max(sorted(c.losses), key=lambda lr: next(
    r["values"]["val_accuracy"] for r in store if r["key"]["method"] == m and r["key"]["steps"] == s
    and r["key"]["lr"] == lr and r["key"]["seed"] == 0)) for (m, s), c in found.items() if c.lr is not None}
changed = sum(by_accuracy[k] != found[k].lr for k in by_accuracy)
mtlib.glue("ch17_grown", int((rates["grown"] > 0).sum()))
mtlib.glue("ch17_cells", len(rates))
mtlib.glue("ch17_at_edge", int(rates["at edge"].sum()))
mtlib.glue("ch17_changed_by_accuracy", changed)
rates.style.hide(axis="index")
""")

md("""
In {glue:text}`ch17_grown` of the {glue:text}`ch17_cells` method-and-budget cells the first grid's best sat at its
edge and the grid grew; {glue:text}`ch17_at_edge` choices still sit at an edge after the growth the script allows,
and the table marks them. Had the rule read the validation accuracy instead of the loss, the choice would change in
{glue:text}`ch17_changed_by_accuracy` cells (exercise 2).
""")

md("""
## 17.3 Accuracy against budget

Test accuracy at each budget: the mean of three seeds at the chosen rate, each seed a dot. Each point is a separate
run with its own rate and its own learning-rate schedule (warm-up, then decay to zero at the budget), not a point on
one run's learning curve. The frozen probe, a logistic regression on the pretrained body's mean-pooled states with its
$C$ chosen on the validation split, is the line every trained method has to clear.
""")

code("""
summary = results.summary(found)
in_budgets = summary[summary["steps"].isin(BUDGETS)]
probe = found[(leaderboard.PROBE.name, 0)]
probe_accuracy = mtlib.glue("ch17_probe", probe.runs[0]["test_accuracy"])
wide = in_budgets.pivot(index="method", columns="steps", values="test accuracy").reindex(METHODS)
spread = in_budgets.pivot(index="method", columns="steps", values="± sd").reindex(METHODS)
mtlib.glue("ch17_later_minus_all", 100 * (in_budgets["later seeds"] - in_budgets["test accuracy"]).mean())
table = wide.map(lambda a: f"{a:.3f}") + " ± " + spread.map(lambda s: f"{s:.3f}")
table.columns = [f"{steps} steps" for steps in table.columns]
table
""")

code("""
FAMILIES = {"controls and layer-wise": ["full fine-tuning", "head only", "discriminative rates", "gradual unfreezing"],
            "bias, adapters, prompts": ["full fine-tuning", "BitFit", "Houlsby adapters, m=64",
                                        "Pfeiffer adapters, m=64", "prompt tuning, 20 tokens", "P-tuning v2, 20 tokens"],
            "low-rank": ["full fine-tuning", "LoRA r=8, query and value", "LoRA r=8, every linear layer",
                         "DoRA r=8, query and value"]}
fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), sharey=True)
for ax, (title, names) in zip(axes, FAMILIES.items()):
    for name in names:
        means = [found[(name, s)].values("test_accuracy").mean() for s in BUDGETS]
        line, = ax.plot(BUDGETS, means, marker="o", label=name)
        for s in BUDGETS:
            seeds = found[(name, s)].values("test_accuracy")
            ax.scatter([s] * len(seeds), seeds, color=line.get_color(), s=10, alpha=0.5)
    ax.axhline(probe_accuracy, color="grey", linestyle="--", label="frozen probe")
    ax.set(xscale="log", xticks=BUDGETS, xticklabels=BUDGETS, xlabel="optimiser steps (batches of 32)", title=title)
    ax.legend(fontsize=7)
axes[0].set_ylabel("test accuracy (dots: seeds; line: their mean)")
plt.tight_layout()
plt.show()
""")

code("""
import torch
from mtlib.forgetting import fit_linear_probe

mtlib.glue("ch17_head_top", wide.loc["head only", max(BUDGETS)])
mtlib.glue("ch17_full_top", wide.loc["full fine-tuning", max(BUDGETS)])
# the frozen body read the other way: a probe on the [CLS] state, the position that head only's pooler reads
board = leaderboard.Leaderboard(cfg)
body = board.model(seed=0).base_model.eval()


@torch.no_grad()
def cls_states(loader):
    \"\"\"The frozen body's state at the first position ([CLS]) for every sentence of a loader, and the labels.\"\"\"
    vectors, labels = [], []
    for batch in loader:
        labels.append(batch.pop("labels"))
        vectors.append(body(**{k: v.to(cfg.device) for k, v in batch.items()}).last_hidden_state[:, 0].cpu())
    return torch.cat(vectors).numpy(), torch.cat(labels).numpy()


train_loader = torch.utils.data.DataLoader(board.tokens["train"], batch_size=32, collate_fn=board.collator)
cls = {"train": cls_states(train_loader), **{split: cls_states(loader) for split, loader in board.scored.items()}}
cls_probe = fit_linear_probe(cls["train"], cls["validation"], leaderboard.PROBE.config["C"])
mtlib.glue("ch17_cls_probe", float(cls_probe.score(*cls["test"])))
print(f"frozen probe on the mean of the token states: {probe.values('test_accuracy')[0]:.3f}; on the [CLS] state: "
      f"{cls_probe.score(*cls['test']):.3f} ({cfg.profile} profile sizes)")
""")

md("""
Two controls frame every row. Full fine-tuning reaches {glue:text}`ch17_full_top:.3f` at 400 steps. Head only, the
pooler and a new classifier trained on the frozen body, reaches {glue:text}`ch17_head_top:.3f`, against the frozen
probe's {glue:text}`ch17_probe:.3f`: both read a frozen body, but head only reads the state at the `[CLS]` position,
and all-MiniLM-L6-v2 was trained as a sentence encoder whose sentence vector is the mean over the tokens, which is
what the probe reads. The same logistic regression on the frozen `[CLS]` state scores {glue:text}`ch17_cls_probe:.3f`:
the position, not the classifier, is most of the difference. A parameter-efficient method that trains only the classifier on top of the pooler (as peft's
sequence-classification setting does, and as the store's runs do) starts from the weaker of the two readings.
""")

md("""
Did every run train? The training loss of each method at the longest budget, the mean over its seeds, smoothed over
20 steps:
""")

code("""
fig, ax = plt.subplots(figsize=(9, 4))
longest = max(BUDGETS)
for name in METHODS:
    curves = np.array([run["train_loss"] for run in found[(name, longest)].runs])
    smooth = pd.Series(curves.mean(axis=0)).rolling(20, min_periods=1).mean()
    ax.plot(smooth, label=name, linewidth=1)
ax.axhline(np.log(2), color="grey", linestyle=":", label="ln 2 (chance)")
ax.set(xlabel="step", ylabel="training loss", title=f"Training loss at {longest} steps (mean of the seeds)")
ax.legend(fontsize=7, ncol=2)
plt.show()
""")

md("""
## 17.4 How close to full fine-tuning, and when

The seeds' spread says how much a method's accuracy moves from run to run; whether one method beats another is a
question about the same test sentences. The difference from full fine-tuning at the same budget, in points, with a
95% bootstrap interval that resamples both sources of noise: each method's three seeds and the
{glue:text}`ch17_n_test:,` test sentences, the sentences shared by the two methods so that each sentence's own
difficulty cancels (`results.seeds_and_sentences`; chapter 07's interval resampled the sentences only, and a seed that
collapses is then invisible). Then the same against the frozen probe:
""")

code("""
def interval(difference, low, high):
    return f"{difference:+.1f} [{low:+.1f}, {high:+.1f}]"


paired = in_budgets.assign(**{
    "vs full fine-tuning": [interval(*r) for r in in_budgets[["vs full", "low", "high"]].itertuples(index=False)],
    "vs frozen probe": [interval(*r) for r in in_budgets[["vs probe", "probe low", "probe high"]].itertuples(index=False)]})
paired.pivot(index="method", columns="steps", values="vs full fine-tuning").reindex(METHODS)
""")

code("""
paired.pivot(index="method", columns="steps", values="vs frozen probe").reindex(METHODS)
""")

code("""
trained = in_budgets[in_budgets["method"] != "full fine-tuning"]
mtlib.glue("ch17_n_trained", trained["method"].nunique())
for s in BUDGETS:
    at = trained[trained["steps"] == s]
    mtlib.glue(f"ch17_beat_probe_{s}", int((at["probe low"] > 0).sum()))
    mtlib.glue(f"ch17_below_probe_{s}", int((at["probe high"] < 0).sum()))
    mtlib.glue(f"ch17_tie_full_{s}", int(((at["low"] <= 0) & (at["high"] >= 0)).sum()))
    mtlib.glue(f"ch17_below_full_{s}", int((at["high"] < 0).sum()))
""")

md("""
Read the two tables as a practitioner would. Of the {glue:text}`ch17_n_trained` trained methods besides full
fine-tuning, {glue:text}`ch17_beat_probe_50` beat the frozen probe beyond the noise at 50 steps (the whole interval
above zero) and {glue:text}`ch17_below_probe_50` fall below it; at 200 steps {glue:text}`ch17_beat_probe_200` beat it,
at 400 steps {glue:text}`ch17_beat_probe_400`. Against full fine-tuning at the same budget,
{glue:text}`ch17_tie_full_50` methods are within the noise at 50 steps, {glue:text}`ch17_tie_full_200` at 200 and
{glue:text}`ch17_tie_full_400` at 400; {glue:text}`ch17_below_full_400` stay below it at 400 steps.
""")

md("""
Has full fine-tuning stopped rising? The store also holds it at 800 steps (3.7 epochs), its rate chosen by the same
rule. Every rate it tried there:
""")

code("""
from mtlib.tuning.task import paired_difference

full_800 = found[("full fine-tuning", 800)]
full_400 = found[("full fine-tuning", 400)]
at_800 = pd.DataFrame([{"rate": r["key"]["lr"], "validation loss": r["values"]["val_loss"],
                        "validation accuracy": r["values"]["val_accuracy"], "test accuracy": r["values"]["test_accuracy"],
                        "forgetting": r["values"]["forgetting"]}
                       for r in store if r["key"]["method"] == "full fine-tuning" and r["key"]["steps"] == 800
                       and r["key"]["seed"] == 0 and results.current(r["key"], "local")]).sort_values("rate")
plateau_gap = results.seeds_and_sentences(full_800.correct(), full_400.correct())
EQUIVALENCE = 0.01  # one point of accuracy: "stopped rising" when the whole interval lies within it
stopped = -EQUIVALENCE < plateau_gap["low"] and plateau_gap["high"] < EQUIVALENCE
mtlib.glue("ch17_full_800", full_800.values("test_accuracy").mean())
mtlib.glue("ch17_full_400", full_400.values("test_accuracy").mean())
for name, value in plateau_gap.items():
    mtlib.glue(f"ch17_plateau_{name}", 100 * value)
mtlib.glue("ch17_plateau_verdict_en", "has stopped rising" if stopped else "has not been shown to stop rising")
mtlib.glue("ch17_plateau_verdict_zh", "已经不再上升" if stopped else "还不能说已经停止上升")
mtlib.glue("ch17_lr_800", f"{full_800.lr:.0e}".replace("e-0", "e-"))
at_800.style.format({"rate": "{:.0e}", "validation loss": "{:.3f}", "validation accuracy": "{:.3f}",
                     "test accuracy": "{:.3f}", "forgetting": "{:+.1f}"}).hide(axis="index")
""")

md("""
At 800 steps full fine-tuning reaches {glue:text}`ch17_full_800:.3f` against {glue:text}`ch17_full_400:.3f` at 400
(difference {glue:text}`ch17_plateau_difference:+.1f` points, 95% interval {glue:text}`ch17_plateau_low:+.1f` to
{glue:text}`ch17_plateau_high:+.1f`): by the test we set, the whole interval within one point, it
{glue:text}`ch17_plateau_verdict_en`. The table shows a trap of long budgets: as training goes on, the model grows
confident, a few confident mistakes raise the validation loss while the accuracy still climbs, and the loss then
prefers a smaller rate ({glue:text}`ch17_lr_800` here). The comparisons below are made at 400 steps, where every
method has all its runs, against full fine-tuning at the same budget.
""")

code("""
reference = found[("full fine-tuning", max(BUDGETS))].values("test_accuracy").mean()


def first_budget(method: str, share: float) -> str:
    \"\"\"The smallest budget at which the method's mean reaches `share` of full fine-tuning at the longest budget.\"\"\"
    reached = [s for s in BUDGETS if found[(method, s)].values("test_accuracy").mean() >= share * reference]
    return f"{reached[0]}" if reached else f"not by {max(BUDGETS)}"


def still_rising(method: str) -> bool:
    \"\"\"Whether the method gained, beyond the noise, between the two longest budgets.\"\"\"
    gain = results.seeds_and_sentences(found[(method, BUDGETS[-1])].correct(), found[(method, BUDGETS[-2])].correct())
    return gain["low"] > 0


reach = pd.DataFrame({"% of full at 400": 100 * wide[max(BUDGETS)] / reference,
                      "steps to 99%": [first_budget(m, 0.99) for m in METHODS],
                      "steps to 97%": [first_budget(m, 0.97) for m in METHODS],
                      "still rising at 400": [still_rising(m) for m in METHODS]}, index=METHODS)
mtlib.glue("ch17_n_rising", int(reach["still rising at 400"].sum()))
reach.style.format({"% of full at 400": "{:.1f}"})
""")

md("""
## 17.5 What each method costs

Accuracy is half the answer; the other half is what a method asks of the machine. The trainable parameters decide
what a task adds to a shared model and the optimiser's memory; the peak memory of a training run (on top of what was
allocated before it started) and the time of a step decide whether it fits and how long it takes. Step times are
measured apart from the store's runs, side by side in one process on an idle machine
(`make leaderboard ARGS=--time`), because the runs themselves may have shared the CPU with other work. The same run times a forward pass over a batch of 32 test sentences with each method's
module in place (unmerged): what the method costs at inference.
""")

code("""
times = results.step_times()
inference = results.step_times(what="inference_seconds_per_batch")
top = in_budgets[in_budgets["steps"] == max(BUDGETS)].set_index("method").reindex(METHODS)
cost = pd.DataFrame({"test accuracy": top["test accuracy"], "trainable": top["trainable"],
                     "trainable %": top["trainable %"], "peak MiB": top["peak MiB"], "saved MiB": top["saved MiB"],
                     "s / step": pd.Series(times).reindex(METHODS),
                     "ms / test batch": 1000 * pd.Series(inference).reindex(METHODS)})
cost[f"minutes for {max(BUDGETS)} steps"] = cost["s / step"] * max(BUDGETS) / 60
for column, name in (("peak MiB", "peak"), ("saved MiB", "saved"), ("s / step", "step")):
    mtlib.glue(f"ch17_{name}_lora", cost.loc["LoRA r=8, query and value", column])
    mtlib.glue(f"ch17_{name}_full", cost.loc["full fine-tuning", column])
cost.style.format({"test accuracy": "{:.3f}", "trainable": "{:,}", "trainable %": "{:.2f}", "peak MiB": "{:.0f}",
                   "saved MiB": "{:.1f}", "s / step": "{:.2f}", "ms / test batch": "{:.0f}",
                   f"minutes for {max(BUDGETS)} steps": "{:.1f}"})
""")

code("""
MARKERS = {name: marker for names, marker in zip(FAMILIES.values(), "osD") for name in names}
fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
for name, row in top.iterrows():
    axes[0].errorbar(row["trainable"], row["test accuracy"], yerr=row["± sd"], marker=MARKERS[name], capsize=3,
                     linestyle="none", label=name)
    if name in times:
        rows = in_budgets[in_budgets["method"] == name]
        axes[1].plot(rows["steps"] * times[name] / 60, rows["test accuracy"], marker=MARKERS[name], label=name)
for ax in axes:
    ax.axhline(probe_accuracy, color="grey", linestyle="--", label="frozen probe")
    ax.set(xscale="log", ylabel="test accuracy (mean of 3 seeds)")
axes[0].set(xlabel="trainable parameters (log scale)", title=f"Accuracy against trainable parameters, {max(BUDGETS)} steps")
axes[1].set(xlabel="minutes of training on this CPU (steps x measured seconds per step)",
            title="Accuracy against training time (50, 200, 400 steps)")
axes[0].legend(fontsize=7, ncol=2)
plt.tight_layout()
plt.show()
""")

md("""
## 17.6 Forgetting

A method that changes the body can lose what the body knew. The store measures it the same way for every run
(`mtlib.forgetting`; chapters 12 and 13 reuse it): a linear probe for another task, question classification (TREC,
six classes), fitted on the body's mean-pooled states before and after training, with its $C$ chosen once on the
pretrained body. Forgetting is the probe's test accuracy before minus after, in points. It asks what a new head could
still read from the body, which is not what Biderman et al. measure (the drop of the tuned model's own scores on tasks
of the source domain), nor a language-model loss on general text (our encoder has no trained language-model head,
chapter 04). A method that leaves the body untouched forgets nothing once its module is removed; the store measures
every method with its module in place, as a deployed model runs.
""")

code("""
noise = mtlib.glue("ch17_forgetting_sd", np.median([found[(m, s)].values("forgetting").std(ddof=1)
                                                    for m in METHODS for s in BUDGETS]))
everything = pd.DataFrame([{"method": r["key"]["method"], "steps": r["key"]["steps"], "rate": r["key"]["lr"],
                            "test accuracy": r["values"]["test_accuracy"], "forgetting": r["values"]["forgetting"]}
                           for r in store if r["key"]["method"] in METHODS and results.current(r["key"], "local")])
trained = everything[everything["test accuracy"] > 0.6]  # runs at chance (diverged) left out of the right panel
fig, axes = plt.subplots(1, 2, figsize=(14, 4.6))
for name, row in top.iterrows():
    axes[0].errorbar(row["forgetting"], row["test accuracy"], xerr=row["forgetting sd"], yerr=row["± sd"],
                     marker=MARKERS[name], capsize=3, linestyle="none", label=name)
axes[0].axvspan(-noise, noise, color="grey", alpha=0.15, label="± one seed sd of forgetting")
axes[0].set(xlabel="forgetting (TREC probe points lost)", ylabel="SST-2 test accuracy",
            title=f"At the chosen rates, {max(BUDGETS)} steps (3 seeds)")
axes[0].legend(fontsize=7, ncol=2)
for name, rows in trained.groupby("method"):
    axes[1].scatter(rows["test accuracy"], rows["forgetting"], s=12, marker=MARKERS[name], label=name)
axes[1].axhline(0, color="grey", linewidth=0.8)
axes[1].set(xlabel="SST-2 test accuracy", ylabel="forgetting (points)",
            title=f"Every stored run that trained ({len(trained)} of {len(everything)})")
plt.tight_layout()
plt.show()
most = trained.loc[trained["forgetting"].idxmax()]
mtlib.glue("ch17_most_forgetting", most["forgetting"])
mtlib.glue("ch17_most_forgetting_run", f"{most['method']}, {int(most['steps'])} steps at {most['rate']:.0e}")
mtlib.glue("ch17_most_forgetting_acc", most["test accuracy"])
""")

md("""
At the chosen rates, the forgetting of every method lies within about one seed's spread
({glue:text}`ch17_forgetting_sd:.1f` points) of zero. The runs that forgot most are runs at rates the rule did not
choose: {glue:text}`ch17_most_forgetting_run` lost {glue:text}`ch17_most_forgetting:.1f` points while still reaching
{glue:text}`ch17_most_forgetting_acc:.3f` on SST-2. Forgetting here is set by the rate and the length of training more
than by the method.
""")
md("""
## 17.7 The goals, measured

Before the store was filled we set three goals, on three-seed means at 400 steps, the longest budget every method
has (section 17.4 tests whether full fine-tuning has stopped rising there): LoRA at least 99% of full fine-tuning with at most 0.5% of the parameters trainable; BitFit at least 97%
with at most 0.2%; adapters at least 99% with at most 3%. A goal is **met** when the whole 95% interval of the
difference from full fine-tuning lies above the allowed shortfall, **missed** when it lies below, and **not decided**
otherwise; the parameter budget must hold as well.
""")

code("""
GOALS = [("LoRA r=8, query and value", 0.99, 0.5), ("BitFit", 0.97, 0.2), ("Houlsby adapters, m=64", 0.99, 3.0),
         ("Pfeiffer adapters, m=64", 0.99, 3.0)]
full_top = found[("full fine-tuning", max(BUDGETS))]
rows = []
for method, share, budget in GOALS:
    cell = found[(method, max(BUDGETS))]
    gap = results.seeds_and_sentences(cell.correct(), full_top.correct())
    allowed = -(1 - share) * full_top.values("test_accuracy").mean()  # the shortfall the goal allows
    fits = top.loc[method, "trainable %"] <= budget
    verdict = ("met" if gap["low"] >= allowed and fits else "missed" if gap["high"] < allowed or not fits
               else "not decided")
    rows.append({"method": method, "goal": f"{100 * share:.0f}% at most {budget}% trainable",
                 "% of full": 100 * cell.values("test_accuracy").mean() / full_top.values("test_accuracy").mean(),
                 "trainable %": top.loc[method, "trainable %"],
                 "difference (points)": interval(100 * gap["difference"], 100 * gap["low"], 100 * gap["high"]),
                 "allowed (points)": 100 * allowed, "verdict": verdict, "still rising": reach.loc[method, "still rising at 400"]})
goals = pd.DataFrame(rows).set_index("method")
for method, row in goals.iterrows():
    slug = {"LoRA r=8, query and value": "lora", "BitFit": "bitfit", "Houlsby adapters, m=64": "houlsby",
            "Pfeiffer adapters, m=64": "pfeiffer"}[method]
    mtlib.glue(f"ch17_goal_{slug}_pct", row["% of full"])
    mtlib.glue(f"ch17_goal_{slug}_trainable", row["trainable %"])
    mtlib.glue(f"ch17_goal_{slug}_verdict_en", row["verdict"])
    mtlib.glue(f"ch17_goal_{slug}_verdict_zh", {"met": "达成", "missed": "未达成", "not decided": "尚无定论"}[row["verdict"]])
goals.style.format({"% of full": "{:.1f}", "trainable %": "{:.2f}", "allowed (points)": "{:+.1f}"})
""")

md("""
## 17.8 Our numbers beside the published ones

The published numbers come from larger models trained for much longer; they set the expectation, not a target our
CPU runs must hit. What should carry over is the shape: how close each method comes to full fine-tuning, at what
share of the parameters.
""")

code("""
PUBLISHED = [  # our closest method, the published setting and result, published share of full (%), trainable %
    ("LoRA r=8, query and value", "Hu et al., RoBERTa-base, SST-2 dev (median of 5 seeds, 60 epochs): 95.1 vs 94.8",
     100 * 95.1 / 94.8, 0.24),
    ("LoRA r=8, query and value", "peft's comparison, Llama-3.2-3B, MetaMathQA to GSM8K: LoRA r=32 0.478 vs 0.472",
     100 * 0.4784 / 0.4716, np.nan),
    ("Houlsby adapters, m=64", "Houlsby et al., BERT-large, SST-2 test: 94.0 vs 94.9 (sizes 8-256)", 100 * 94.0 / 94.9,
     3.6),
    ("BitFit", "Ben Zaken et al., BERT: competitive with full fine-tuning on small and medium data", np.nan, np.nan),
    ("prompt tuning, 20 tokens", "peft's comparison (as above), initialised from the vocabulary: 0.343 vs 0.472",
     100 * 0.3434 / 0.4716, np.nan),
    ("P-tuning v2, 20 tokens", "Liu et al. 2022: effective across model scales and NLU tasks (no SST-2 result)", np.nan,
     np.nan)]
anchors = pd.DataFrame([{"ours": m, "published": text, "published: % of full": share, "published: trainable %": pct,
                         "ours: % of full": 100 * wide.loc[m, max(BUDGETS)] / reference,
                         "ours: trainable %": top.loc[m, "trainable %"]} for m, text, share, pct in PUBLISHED])
anchors.style.format({"published: % of full": "{:.1f}", "published: trainable %": "{:.2f}", "ours: % of full": "{:.1f}",
                      "ours: trainable %": "{:.2f}"}, na_rep="-").hide(axis="index")
""")

md("""
Read the published column with its settings. Hu et al.'s full fine-tuning figure is RoBERTa's own published result,
not a run of theirs; Houlsby et al.'s are test-server scores, and their 3.6% covers adapters of sizes 8 to 256. peft's
method comparison (its results at commit 5d602fd; they change between reruns) is the setting most readers meet today, a
3-billion-parameter decoder learning mathematics for 5,000 steps: there LoRA matches full fine-tuning, prompt tuning
reaches 0.057 from a random start and 0.343 from the vocabulary, and full fine-tuning forgets less than LoRA (after
full fine-tuning the loss on general text rises by 0.030 nats, after LoRA by 0.050). Biderman et al.
{cite}`biderman2024lora`, with 7B models on code and mathematics, found a different balance: in standard low-rank settings LoRA learns substantially less than
full fine-tuning and keeps more of what the model could do outside the new domain, one trade-off between learning and
forgetting rather than a win for either; full fine-tuning's weight change has a rank 10 to 100 times larger than
typical LoRA configurations.
""")

md("""
## 17.9 One record, re-run

The store is only worth reading if its records are what the code computes. Under the `local` profile, on a machine
whose key matches the store's, the cell below trains one stored run again and compares every value except time and
memory exactly: CPU runs here are deterministic. It sets the number of CPU threads to the store's, which the key
holds. Under `smoke` (and in the offline rehearsal) it runs the whole pipeline on a tiny configuration into a
temporary store. On another machine (Colab's GPU, another CPU) the key differs, and the store says which fields.
""")

code("""
import tempfile
from pathlib import Path

import torch

bitfit = leaderboard.METHODS["BitFit"]
if cfg.profile == "smoke" or cfg.rehearsal:  # the whole pipeline on a tiny configuration, into a temporary store
    board = leaderboard.Leaderboard(cfg)
    scratch = Store(Path(tempfile.mkdtemp()) / "store.jsonl")
    key = board.key(bitfit, lr=bitfit.rates[1], seed=0, steps=3)
    stored = scratch.add(key, board.run(key), leaderboard.provenance("chapter 17 (smoke)"))
    again = board.run(key)
elif cfg.profile == "local":  # the stored BitFit run at 50 steps whose accuracy is the median of its three seeds
    cell = found[("BitFit", 50)]
    seed = int(np.argsort(cell.values("test_accuracy"))[1])
    stored = next(r for r in store if r["key"]["method"] == "BitFit" and r["key"]["steps"] == 50
                  and r["key"]["lr"] == cell.lr and r["key"]["seed"] == seed and results.current(r["key"], "local"))
    threads = torch.get_num_threads()
    torch.set_num_threads(stored["key"]["threads"])
    board = leaderboard.Leaderboard(cfg)
    key = board.key(bitfit, lr=cell.lr, seed=seed, steps=50)
    if key == stored["key"]:
        again = board.run(key)
    else:
        try:
            store.require(key)
        except StoreError as err:
            print(err)
        again = None
    torch.set_num_threads(threads)
else:  # the full profile (Colab): another model and device, so another key; nothing to download or re-run
    stored, again = None, None
    print(f"The store holds runs of the local profile on a CPU; this session runs the {cfg.profile} profile on "
          f"{cfg.device.type}, whose records would have another key (profile, checkpoint, device), so no record is "
          "re-run here. Under MTLIB_PROFILE=local a matching machine re-runs one.")
matched = again is not None
differ = leaderboard.same_values(stored["values"], again) if matched else []
if matched:
    print("re-run:", f"different in {', '.join(differ)}" if differ else "identical in every value but time and memory")
""")

md("""
## 17.10 Choosing a method

What our measurements and the literature say, by the constraint that decides:

- **You need a baseline in minutes.** The frozen probe: no gradient through the body, a logistic regression on cached
  features, {glue:text}`ch17_probe:.3f` here. Every trained method has to beat it by more than its seed spread before
  it earns its cost, and at 50 steps several do not (section 17.4).
- **No labels at all.** Nothing in this table applies: every method here, the probe included, learns from labels.
  Prompt a model zero-shot (chapter 10), label a few hundred examples, or pretrain further on unlabelled text of the
  domain (chapter 04).
- **Memory is the limit.** LoRA: its optimiser keeps state for the few trainable parameters only
  ({glue:text}`ch17_peak_lora:.0f` MiB peak against {glue:text}`ch17_peak_full:.0f` MiB for full fine-tuning here, on
  top of the weights). QLoRA stores the frozen weights in 4 bits as well (chapter 09).
- **Many tasks on one backbone.** Anything that leaves the body untouched stores one small file per task: LoRA
  ({glue:text}`ch17_saved_lora:.1f` MiB against {glue:text}`ch17_saved_full:.0f` MiB), BitFit, adapters, prompts. Keep
  the modules separate and swap them per request; merging one in gives up the swap.
- **Inference must cost nothing extra.** Full fine-tuning; LoRA and DoRA merged into the weights; BitFit, which only
  changes biases. Adapters add layers and prompts add tokens at every call.
- **The best accuracy within a budget.** Section 17.4's table: which method reaches 99% of full fine-tuning, and at
  what budget.

## 17.11 Questions readers ask

- **Which rank and alpha?** Rank 8 on the query and value projections is Hu et al.'s setting for RoBERTa and ours
  (their paper lists $\\alpha = 8$, their repository's script 16, which we use).
  LoRA scales its update by $\\alpha / r$; with $\\alpha$ fixed, a larger rank takes smaller steps per direction, which
  is why Hu et al. could change $r$ without retuning the rate. Change $\\alpha / r$, and choose the rate again
  (chapter 09).
- **Which learning rate?** Choose it, every time the method or the budget changes, by a stated rule (section 17.2).
  A rate borrowed from another method can decide a comparison on its own.
- **How many steps?** Until full fine-tuning's validation accuracy stops rising; section 17.4 measures where that is
  on this task.
- **Merge or not?** Merge to serve one task with no extra latency; keep the module separate to swap tasks on one body.
- **How much memory does QLoRA need?** Computed below for a 7B model.
- **Prompt methods or LoRA?** Prompt tuning's soft prompt is a few thousand numbers. Lester et al. found it matching
  full fine-tuning on SuperGLUE only with T5 at 11 billion parameters, and its start matters at smaller sizes (from the
  vocabulary or the class labels, not random); P-tuning v2 puts prompts in every layer. Section 17.4 has both on our
  encoder.
- **When does full fine-tuning win?** When the new task or domain is far from what the model saw and there is data to
  learn it: Biderman et al. found full fine-tuning learns more on code and mathematics.
- **Float32 or bfloat16 on a CPU?** bfloat16 autocast halves a step's time only where the CPU computes in bfloat16
  natively (AVX512-BF16 or AMX); elsewhere it is emulated, and on the machine that filled this store (no such
  instructions) a step was about 25 times slower. The store trains in float32, and its key records the precision: a
  record computed in bfloat16 would be another run.
""")

code("""
def training_memory_gib(frozen_billions: float, frozen_bits: float, trainable_millions: float) -> float:
    \"\"\"Frozen weights at `frozen_bits` each, plus 16 bytes per trainable parameter: its 32-bit weight, gradient and
    Adam's two moments (mixed precision keeps a 16-bit copy and a 32-bit master: the same 16 bytes in all).
    Activations are not counted: they grow with the batch and the sequence length.\"\"\"
    return (frozen_billions * 1e9 * frozen_bits / 8 + trainable_millions * 1e6 * 16) / 2**30


LORA_7B = 40  # millions: rank 16 on every linear layer of a 32-layer Llama-style 7B model (about 1.25M per layer)
qlora = pd.Series({"full fine-tuning (every weight trains)": training_memory_gib(0, 16, 7000),
                   "LoRA, frozen weights in 16 bits": training_memory_gib(7, 16, LORA_7B),
                   "QLoRA, frozen weights in NF4 (about 4.127 bits: 4 + 0.127 for the block constants)":
                   training_memory_gib(7, 4.127, LORA_7B)},
                  name="GiB before activations")
for name, value in zip(("full", "lora", "qlora"), qlora):
    mtlib.glue(f"ch17_mem7b_{name}", value)
mtlib.glue("ch17_lora7b_mb", LORA_7B * 1e6 * 2 / 2**20)
qlora.round(1).to_frame()
""")

md("""
## Check

The store is complete at every budget, each chosen rate is the one the book's rule (chapter 06) picks from the rates
tried, the accuracies and per-sentence results are consistent, and the re-run record reproduces its stored values.
""")

code("""
for (method, steps), cell in found.items():
    if cell.lr is not None:
        assert rate_rule(cell.losses)[0] == cell.lr, (method, steps)  # the book's rule, on the stored losses
    for run in cell.runs:
        assert abs(run["test_accuracy"] - run["test_correct"].count("1") / len(run["test_correct"])) < 1e-12
assert not matched or not differ, differ  # under the same key, the re-run is the stored run
assert 0 < qlora.iloc[2] < qlora.iloc[1] < qlora.iloc[0]
if not cfg.rehearsal:
    assert BUDGETS == [50, 200, 400], BUDGETS  # every method, every budget, three seeds
    assert full_800.complete and len(METHODS) == len(leaderboard.METHODS)
print("all checks passed")
""")

md("""
## Pitfalls

- **A leaderboard without a rate rule.** Methods compared at one shared learning rate rank by how well that rate suits
  each of them. Choose each method's rate on validation data, say how, and check that the choice is not at the edge
  of the grid.
- **The validation loss at long budgets.** Late in training a few confident mistakes raise the validation loss while
  the accuracy still rises, and a loss-based rule then drifts towards small rates (section 17.4). Look at both.
- **One seed, or intervals over sentences only.** A seed that collapses to chance moves a three-seed mean by points;
  resample the seeds as well as the sentences before ranking methods.
- **A result under another key.** A number from another torch, precision, thread count or instruction set is another
  experiment; the store refuses it and says which fields differ.
- **Timing runs that shared the machine.** Two jobs that each use both cores of a two-core machine halve each other's
  speed; time the steps side by
  side on an idle machine.

## Exercises

1. Which methods reach 97% of full fine-tuning's accuracy within 50 steps, and which need 400?

   ```{dropdown} Answer
   Section 17.4's table, column "steps to 97%", answers it from the store; {glue:text}`ch17_n_rising` methods were
   still gaining between 200 and 400 steps beyond the noise, so for them 400 steps is not their plateau.
   ```

2. Choose each rate by the validation accuracy instead of the validation loss. Which choices change?

   ```{dropdown} Answer
   The cell of section 17.2 computes it from the stored first-seed runs: {glue:text}`ch17_changed_by_accuracy` of the
   {glue:text}`ch17_cells` choices change. With {glue:text}`ch17_n_val:,` validation sentences, two rates often score
   within a few sentences of each other, and the accuracy cannot tell them apart; the loss can.
   ```

3. The seeds after the first ran at a rate chosen on the first seed's run. Is the first seed's accuracy biased
   upwards?

   ```{dropdown} Answer
   Compare the columns "test accuracy" and "later seeds" of `summary`: the first seed's rate was picked because its
   validation loss was lowest, and its test accuracy shares some of that luck. Across the cells of the store the mean
   of the later seeds is {glue:text}`ch17_later_minus_all:+.2f` points from the three-seed mean.
   ```

4. A reader has a 7B model, one 24 GB GPU and four tasks. Which method?

   ```{dropdown} Answer
   Full fine-tuning needs about {glue:text}`ch17_mem7b_full:.0f` GiB before activations: out of reach. LoRA on 16-bit
   frozen weights needs about {glue:text}`ch17_mem7b_lora:.1f` GiB, which fits with room for activations at a modest
   batch; QLoRA about {glue:text}`ch17_mem7b_qlora:.1f` GiB, leaving room for longer sequences. One LoRA module per
   task, about {glue:text}`ch17_lora7b_mb:.0f` MB each in 16 bits, swapped on one base model.
   ```

## References

LoRA {cite}`hu2022lora`; DoRA {cite}`liu2024dora`; QLoRA {cite}`dettmers2023qlora`; adapters
{cite}`houlsby2019adapters,pfeiffer2021adapterfusion`; BitFit {cite}`benzaken2022bitfit`; prompt tuning
{cite}`lester2021power`; P-tuning v2 {cite}`liu2022ptuning`; discriminative rates and gradual unfreezing
{cite}`howard2018ulmfit`; LoRA against full fine-tuning on forgetting {cite}`biderman2024lora`; TREC {cite}`li2002trec`;
SST-2 {cite}`socher2013sst`.

```{bibliography}
:filter: docname in docnames
```
""")

nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"},
                                         "language_info": {"name": "python", "pygments_lexer": "ipython3"}})
nbformat.write(nb, f"book/en/{NAME}.ipynb")
print("wrote", f"book/en/{NAME}.ipynb", len(cells), "cells")
