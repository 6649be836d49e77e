"""The fixed task of Part II (chapters 06-11 and 17): the encoder on SST-2 with chapter 02's recipe, in the results
store's setting; and the decoder's setting of chapters 10 and 11 (`LabelWordTask`), where prompt and prefix tuning
train through label words.

Every technique chapter trains on the whole splits (6,920 training, 872 validation and 1,821 test sentences), with
the same seeds, batches and step budget as the store, and reports the same columns, so that their tables line up
with each other and with chapter 17:

    fixed = tuning.task.SST2Task(cfg)
    runs = [fixed.run("LoRA r=8", lambda model: lora.apply(model, lora.LoraConfig()), lr=1e-2, seed=s) for s in (0, 1, 2)]
    tuning.task.compare(fixed.controls() + runs)

Each method gets its own learning rate by the book's rule (`rates`, stated in chapter 06); the test split is read
once per run and compared only between rates chosen that way.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import data, measure, runtime, zoo
from ..params import count_parameters
from ..train import History, fit, predict
from .common import save

BATCH_SIZE = 32
MAX_LENGTH = 64
LOCAL_STEPS = 50  # the budget of Part II's live runs under `local`: the results store's shortest


@dataclass
class Run:
    """One training run on the fixed task: what the comparison tables show."""

    name: str
    lr: float
    seed: int
    history: History
    val_accuracy: float
    test_accuracy: float
    test_correct: np.ndarray  # 1 where a test sentence was classified right: for paired comparisons per sentence
    trainable: int
    total: int
    seconds_per_step: float
    peak_mib: float
    saved_bytes: int
    model: torch.nn.Module | None = field(default=None, repr=False)  # kept only when asked (`keep_model=True`)


class SST2Task:
    """Part II's fixed task: the results store's setting (`leaderboard.Leaderboard`, chapter 17) at a chapter's budget.

    The encoder on the whole SST-2 splits with chapter 02's recipe, for a budget of optimiser steps (50 under `local`,
    about three epochs under `full`). A chapter trains its own method live with `run`, which gives exactly the
    store's record for the same method, rate and seed, and reads the controls the store already holds with `stored`
    (under a profile the store has no rows for, `controls` trains them).
    """

    def __init__(self, cfg: runtime.Config, steps: int | None = None, store=None):
        from .leaderboard import Leaderboard

        self.cfg, self.store = cfg, store  # store: a `mtlib.store.Store`; None reads the one shipped with mtlib
        self.board = Leaderboard(cfg)
        self.ds, self.tokenizer, self.label_names = self.board.ds, self.board.tokenizer, self.board.label_names
        self.steps = steps or cfg.pick(smoke=4, local=LOCAL_STEPS, full=650)

    def loaders(self, seed: int) -> dict:
        """`seed`'s training batches for the budget (grouped by length, as in chapter 02), and the scored splits."""
        return {"train": self.board.train_loader(seed, self.steps), **self.board.scored}

    def whole(self, split: str):
        """Every sentence of a split once, in a fixed order (for features: chapter 07's probe reads the whole
        training split, where `loaders` serves the budget's batches)."""
        from torch.utils.data import DataLoader

        if split != "train":
            return self.board.scored[split]
        return DataLoader(self.board.tokens["train"], batch_size=BATCH_SIZE, collate_fn=self.board.collator)

    @property
    def epochs(self) -> float:
        """Passes over the training split in one run."""
        return self.steps * BATCH_SIZE / len(self.ds["train"])

    def model(self, seed: int) -> torch.nn.Module:
        """A freshly loaded classifier; `seed` fixes its new head's initial weights (and dropout)."""
        return self.board.model(seed)

    def stored(self, method: str, steps: int | None = None, profile: str | None = None):
        """The store's cell (`results.Cell`: chosen rate, one record per seed) of `method` at this budget, or None
        where the store holds no complete cell for this profile."""
        from .results import cells

        cell = cells(self.store, profile=profile or self.cfg.profile).get((method, self.steps if steps is None else steps))
        return cell if cell is not None and cell.complete else None

    @property
    def full_lr(self) -> float:
        """Full fine-tuning's rate: the store's choice at this budget, or the profile's (chapter 02's) without it."""
        cell = self.stored("full fine-tuning")
        return cell.lr if cell is not None else self.cfg.pick(smoke=3e-4, local=3e-4, full=5e-5)

    def run(self, name: str, prepare, lr: float, seed: int, keep_model: bool = False, optimizer=None) -> Run:
        """Load a fresh model, `prepare(model)` it (apply a technique, freeze layers; None: full fine-tuning),
        train it on `seed`'s batches for the budget at `lr`, and score it on the validation and test splits.

        `optimizer(model)`, when given, builds the optimiser after `prepare` (e.g. over parameter groups with their
        own rates, chapter 06); otherwise `fit` builds AdamW.
        """
        model = self.model(seed)
        if prepare is not None:
            prepare(model)
        history, used = self.board.train(model, lr, seed, self.steps,
                                         optimizer(model) if optimizer is not None else None)
        run = scored(name, model, history, used, self.board.scored["test"], lr, seed, self.cfg.device, keep_model)
        return self.idle_timing(run)

    def idle_timing(self, run: Run) -> Run:
        """Under `local`, a run of a method the store times (`results.step_times`, measured side by side on an idle
        machine) reports that time per step, so that live and stored rows of one table share one protocol."""
        from .results import step_times

        measured = step_times().get(run.name) if self.cfg.profile == "local" else None
        if measured is not None:
            run.seconds_per_step = measured
        return run

    def record(self, method: str, lr: float, seed: int) -> dict | None:
        """The store's record of `method` at `lr` and `seed` at this budget under exactly this setting (checkpoint,
        threads, versions: `leaderboard.Leaderboard.key`), or None. Where it exists, a live run must equal it."""
        from ..store import Store
        from .leaderboard import METHODS

        store = self.store if self.store is not None else Store()
        return store.get(self.board.key(METHODS[method], lr, seed, self.steps))

    def rate(self, method: str, run_at, rates=None) -> float:
        """`method`'s rate by the book's rule (`rates.pick_rate`, stated in chapter 06): the store's choice at this
        budget where it holds the cell (under `smoke`, the `local` profile's choice), otherwise the rule run here
        with `run_at(lr)` (the first seed's run) over `rates` (default: the method's grid, `leaderboard.METHODS`)."""
        from .leaderboard import METHODS
        from .rates import pick_rate

        cell = self.stored(method)
        if cell is None and (self.cfg.profile == "smoke" or self.cfg.rehearsal):
            cell = self.stored(method, LOCAL_STEPS, "local")  # a few tiny steps cannot choose a rate: local's choice
        if cell is not None:
            return cell.lr
        return pick_rate(run_at, rates or METHODS[method].rates)[0].lr

    def controls(self, names=("full fine-tuning", "head only"), seeds=None) -> list[Run]:
        """The controls of every Part II table, one `Run` per seed: read from the store where it holds them at this
        budget (the rate its rule chose), trained here otherwise, at full fine-tuning's rate or the middle of the
        method's grid (`leaderboard.METHODS`)."""
        from .leaderboard import METHODS, SEEDS
        from .results import step_times

        runs = []
        for name in names:
            cell = self.stored(name)
            if cell is not None:
                runs += [stored_run(name, cell.lr, seed, values, step_times().get(name))
                         for seed, values in zip(SEEDS, cell.runs)]
                continue
            method = METHODS[name]
            lr = self.full_lr if name == "full fine-tuning" else method.rates[len(method.rates) // 2]
            for seed in seeds or SEEDS:
                model = self.model(seed)
                optimizer = self.board.prepare(method, model, lr, self.steps)
                history, used = self.board.train(model, lr, seed, self.steps, optimizer)
                runs.append(self.idle_timing(scored(name, model, history, used, self.board.scored["test"], lr, seed,
                                                    self.cfg.device, keep_model=False)))
        return runs

    def probe(self) -> np.ndarray:
        """The practitioner's cheapest control (chapter 07): a logistic regression on the frozen encoder's mean-pooled
        token states, its C chosen on the validation split; from the store where it holds it. Returns its
        per-sentence test correctness, as `Run.test_correct`, for `paired_difference`."""
        from .leaderboard import PROBE

        cell = self.stored(PROBE.name, steps=0)
        values = cell.runs[0] if cell is not None else self.board.run_probe()
        return np.array([int(c) for c in values["test_correct"]], dtype=float)


def stored_run(name: str, lr: float, seed: int, values: dict, seconds_per_step: float | None) -> Run:
    """A store record as a `Run` for `compare`: its time per step is the one measured side by side on an idle machine
    (`results.step_times`) where given, since records were not timed alone."""
    epoch = {"epoch": 1, "train_loss": float(np.mean(values["train_loss"])), "val_loss": values["val_loss"],
             "val_accuracy": values["val_accuracy"], "seconds": values["seconds"]}
    steps = len(values["train_loss"])
    correct = np.array([int(c) for c in values["test_correct"]], dtype=float)
    return Run(name=name, lr=lr, seed=seed, history=History(epochs=[epoch], steps=list(values["train_loss"])),
               val_accuracy=values["val_accuracy"], test_accuracy=float(correct.mean()), test_correct=correct,
               trainable=values["trainable"], total=values["total"],
               seconds_per_step=seconds_per_step or values["seconds"] / steps, peak_mib=values["peak_mib"],
               saved_bytes=values["saved_bytes"])


class LabelWordTask:
    """The decoder's setting of chapters 10 and 11: SST-2 sentences in a template, classified by the frozen causal
    LM's next-token logits of two label words (`mtlib.prompting.LabelWordClassifier`), one epoch in batches of 8.

        setting = tuning.task.LabelWordTask(cfg, lm, tokenizer)
        run = setting.run("prefix, 14 tokens", lambda lm: prefix.apply(lm, prefix.PrefixConfig(14)), lr=3e-3)

    `run` trains what `prepare` adds to a copy of the language model (its weights stay frozen) and scores it like
    `SST2Task.run`, on fewer sentences: a decoder step costs several encoder steps on a CPU.
    """

    BATCH_SIZE = 8

    def __init__(self, cfg: runtime.Config, lm: torch.nn.Module, tokenizer,
                 template: str = "Review: {text}\nSentiment:", words=(" negative", " positive")):
        from ..prompting import label_word_ids

        self.cfg, self.lm, self.tokenizer, self.template = cfg, lm, tokenizer, template
        self.word_ids = label_word_ids(tokenizer, words)
        if tokenizer.padding_side != "left":
            raise ValueError("LabelWordTask reads every prompt's last position: set tokenizer.padding_side = 'left' "
                             "first.")
        sst2 = data.load_dataset("sst2", seed=cfg.seed)
        ds = data.sample(sst2, seed=cfg.seed, train=cfg.pick(smoke=8, local=240, full=800),
                         validation=cfg.pick(smoke=8, local=128, full=None),
                         test=cfg.pick(smoke=16, local=200, full=872))
        for split in ("validation", "test"):  # sorted by length: less padding (left padding shifts positions)
            lengths = [len(ids) for ids in tokenizer(list(ds[split]["text"]))["input_ids"]]
            ds[split] = ds[split].select(np.argsort(lengths, kind="stable"))
        self.ds = ds.map(lambda row: {"text": template.format(text=row["text"])})

    def loaders(self, seed: int) -> dict:
        """The loaders of `seed`: its order of training batches (grouped by length), and the scored splits."""
        return data.make_loaders(self.ds, self.tokenizer, batch_size=self.BATCH_SIZE, max_length=512, seed=seed,
                                 group_by_length=True)

    @property
    def steps(self) -> int:
        """Optimiser steps per run (one epoch)."""
        return -(-len(self.ds["train"]) // self.BATCH_SIZE)

    def classifier(self, lm: torch.nn.Module) -> torch.nn.Module:
        """`lm` as a classifier by the label words."""
        from ..prompting import LabelWordClassifier

        return LabelWordClassifier(lm, self.word_ids)

    def run(self, name: str, prepare, lr: float, seed: int = 0, keep_model: bool = False) -> Run:
        """Copy the language model, `prepare(copy)` it (apply a technique), train one epoch at `lr` through the label
        words, and score it on the validation and test splits."""
        runtime.seed_everything(seed)  # a technique's random start, and the order of the batches
        lm = copy.deepcopy(self.lm)  # the pretrained model, untouched by the runs before
        prepare(lm)
        model = self.classifier(lm)
        loaders = self.loaders(seed)
        with measure.usage(self.cfg.device) as used:
            history = fit(model, loaders["train"], loaders["validation"], epochs=1, lr=lr, verbose=False)
        return scored(name, model, history, used, loaders["test"], lr, seed, self.cfg.device, keep_model)


def scored(name: str, model: torch.nn.Module, history: History, used: measure.Usage, test_loader, lr: float,
           seed: int, device, keep_model: bool) -> Run:
    """A trained model measured for the comparison tables: its size, its saved weights and its test predictions."""
    counted = count_parameters(model)
    with tempfile.TemporaryDirectory() as folder:
        saved = save(model, Path(folder) / "weights.safetensors")
    test = predict(model, test_loader, device)
    correct = (test["preds"] == test["labels"]).astype(float)
    return Run(name=name, lr=lr, seed=seed, history=history, val_accuracy=history.last["val_accuracy"],
               test_accuracy=float(correct.mean()), test_correct=correct,
               trainable=counted["trainable"], total=counted["total"],
               seconds_per_step=sum(e["seconds"] for e in history.epochs) / len(history.steps), peak_mib=used.peak_mib,
               saved_bytes=saved, model=model if keep_model else None)


@torch.no_grad()
def mean_pooled_features(body: torch.nn.Module, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """The mean of a frozen encoder's token states (padding left out) for every sentence of a loader, and the labels."""
    body.eval()
    vectors, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels.append(batch.pop("labels").cpu())
        mask = batch["attention_mask"].unsqueeze(-1).float()
        states = body(**batch).last_hidden_state
        vectors.append(((states * mask).sum(1) / mask.sum(1)).cpu())
    return torch.cat(vectors).numpy(), torch.cat(labels).numpy()


def compare(runs: list[Run]) -> pd.DataFrame:
    """One row per method (runs grouped by name): accuracy with its spread over seeds, and the cost columns."""
    rows = {}
    for name in dict.fromkeys(r.name for r in runs):
        group = [r for r in runs if r.name == name]
        test = [r.test_accuracy for r in group]
        rows[name] = {
            "lr": group[0].lr, "seeds": len(group),
            "validation accuracy": np.mean([r.val_accuracy for r in group]),
            "test accuracy": np.mean(test), "± sd": np.std(test, ddof=1) if len(test) > 1 else np.nan,
            "trainable parameters": group[0].trainable, "trainable %": 100 * group[0].trainable / group[0].total,
            "s / step": np.mean([r.seconds_per_step for r in group]),
            "peak memory (MiB)": np.mean([r.peak_mib for r in group]),
            "saved (MiB)": group[0].saved_bytes / 2**20}
    return pd.DataFrame(rows).T.astype({"seeds": int, "trainable parameters": int})


def paired_difference(correct_a, correct_b, draws: int = 2000, seed: int = 0) -> dict:
    """Accuracy of method a minus method b on the same test sentences, with a 95% bootstrap interval over them.

    correct_a, correct_b: 1 where a sentence was classified right, one row per seed (`Run.test_correct`), or one
    row. Each sentence's correctness is averaged over the seeds; the sentences are resampled together for both
    methods, so the pairing removes the sentences' own difficulty from the noise. The spread over seeds is another
    source of noise: report it beside this interval.
    """
    a, b = np.atleast_2d(correct_a).mean(axis=0), np.atleast_2d(correct_b).mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"The two methods were scored on different test sets ({a.shape[0]} and {b.shape[0]} "
                         "sentences): compare runs of the same task.")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(draws, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"difference": float(diff.mean()), "low": float(low), "high": float(high)}
