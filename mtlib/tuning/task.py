"""The fixed task of Part II (chapters 06-11 and 17): the encoder on SST-2 with chapter 02's recipe; and the decoder's
setting of chapters 10 and 11 (`LabelWordTask`), where prompt and prefix tuning train through label words.

Every technique chapter trains on the same sample, with the same seeds, batches and step budget, and reports the
same columns, so that their tables line up:

    task = tuning.task.SST2Task(cfg)
    run = task.run("LoRA r=8", lambda model: lora.apply(model, lora.LoraConfig()), lr=3e-3, seed=0)
    tuning.task.compare([run, ...])

Each method gets its own learning rate, chosen on the validation split (parameter-efficient methods need rates
10-30x full fine-tuning's); the test split is read once per run and compared only between rates chosen that way.
The sample is chapter 02's in every profile: under `full` (BERT-base on a GPU) the whole splits, 6,920 training
sentences and three epochs, about 650 steps a run.
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
    """Chapter 02's data, batches and budget; `run` trains a fresh model prepared by a technique and measures it."""

    def __init__(self, cfg: runtime.Config):
        self.cfg = cfg
        sst2 = data.load_dataset("sst2", seed=cfg.seed)
        self.label_names = data.label_names(sst2)
        self.ds = data.sample(sst2, seed=cfg.seed,
                              train=cfg.pick(smoke=128, local=800, full=None),
                              validation=cfg.pick(smoke=32, local=256, full=None),
                              test=cfg.pick(smoke=64, local=872, full=None))
        self.tokenizer = zoo.load_tokenizer("encoder", cfg)
        for split in ("validation", "test"):  # sorted by length: less padding, and no score depends on the order
            lengths = [len(ids) for ids in self.tokenizer(list(self.ds[split]["text"]))["input_ids"]]
            self.ds[split] = self.ds[split].select(np.argsort(lengths, kind="stable"))
        self.epochs = cfg.pick(smoke=1, local=2, full=3)
        self.full_lr = cfg.pick(smoke=3e-4, local=3e-4, full=5e-5)  # chapter 02's choice on validation
        self._loaders = {}

    def loaders(self, seed: int) -> dict:
        """The loaders of `seed`: its training batches (grouped by length, as in chapter 02), reset to their start."""
        if seed not in self._loaders:
            self._loaders[seed] = data.make_loaders(self.ds, self.tokenizer, batch_size=BATCH_SIZE,
                                                    max_length=MAX_LENGTH, seed=seed, group_by_length=True)
        self._loaders[seed]["train"].batch_sampler.generator.manual_seed(seed)
        return self._loaders[seed]

    @property
    def steps(self) -> int:
        """Optimiser steps per run."""
        return self.epochs * len(self.loaders(0)["train"])

    def model(self, seed: int) -> torch.nn.Module:
        """A freshly loaded classifier; `seed` fixes its new head's initial weights (and dropout)."""
        runtime.seed_everything(seed)
        return zoo.load_model("encoder", self.cfg, num_labels=len(self.label_names))

    def probe(self) -> np.ndarray:
        """The practitioner's cheapest control (chapter 07): a logistic regression on the frozen encoder's mean-pooled
        token states, its C chosen on the validation split. Returns its per-sentence test correctness, as
        `Run.test_correct`, for `paired_difference`.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        body = self.model(seed=0).base_model  # the checkpoint's encoder; the head is not used
        features = {split: mean_pooled_features(body, loader, self.cfg.device)
                    for split, loader in self.loaders(seed=0).items()}
        candidates = [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(*features["train"])
                      for c in (0.01, 0.1, 1.0)]
        best = max(candidates, key=lambda candidate: candidate.score(*features["validation"]))
        return (best.predict(features["test"][0]) == features["test"][1]).astype(float)

    def run(self, name: str, prepare, lr: float, seed: int, keep_model: bool = False, optimizer=None,
            **fit_args) -> Run:
        """Load a fresh model, `prepare(model)` it (apply a technique, freeze layers; None: full fine-tuning),
        train it on `seed`'s batches at `lr`, and score it on the validation and test splits.

        `optimizer(model)`, when given, builds the optimiser after `prepare` (e.g. over parameter groups with their
        own rates, chapter 06); otherwise `fit` builds AdamW. `fit_args` go to `fit` as they are.
        """
        model = self.model(seed)
        if prepare is not None:
            prepare(model)
        if optimizer is not None:
            fit_args["optimizer"] = optimizer(model)
        loaders = self.loaders(seed)
        with measure.usage(self.cfg.device) as used:
            history = fit(model, loaders["train"], loaders["validation"], epochs=self.epochs, lr=lr,
                          verbose=False, **fit_args)
        return scored(name, model, history, used, loaders["test"], lr, seed, self.cfg.device, keep_model)


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
