"""The runs of the results store (chapter 17): every technique and its controls on the fixed task, at step budgets
long enough to answer "which method, and how long?".

The task is Part II's (the encoder on SST-2, batches of 32 grouped by length, at most 64 tokens, chapter 02's
recipe: AdamW, linear decay after 10% warm-up, weight decay on matrices, gradients clipped at 1), on the whole
splits: 6,920 training, 872 validation and 1,821 test sentences. A budget is a number of optimiser steps; the
batches run on through as many epochs as it takes. Each method has a grid of rates; the store's script picks the
rate with the lowest validation loss on the first seed, extends the grid while the choice sits at its edge, then
runs the other seeds at that rate (the book's rate rule).

    board = Leaderboard(cfg)
    key = board.key(METHODS["LoRA r=8, query and value"], lr=3e-3, seed=0, steps=200)
    values = board.run(key)                     # trains, scores, measures forgetting
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from .. import __version__, data, freeze, measure, runtime, zoo
from ..forgetting import TrecProbe
from ..params import count_parameters
from ..train import fit, predict
from . import adapters, bitfit, layerwise, lora, prefix, prompt
from .common import save
from .task import BATCH_SIZE, MAX_LENGTH, mean_pooled_features

TASK = "sst2-encoder"
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Method:
    """A row of the leaderboard: how to prepare a freshly loaded classifier, and the rates to choose from."""

    name: str
    technique: str  # "full", "head", "discriminative", "gradual", or a module of mtlib.tuning
    config: dict = field(default_factory=dict)
    rates: tuple[float, ...] = ()


FULL_RATES = (3e-5, 1e-4, 3e-4)
METHODS = {m.name: m for m in (
    Method("full fine-tuning", "full", {}, FULL_RATES),
    Method("head only", "layerwise", {"k": 0}, (1e-3, 3e-3, 1e-2)),
    Method("discriminative rates", "discriminative", {"decay": 0.95 ** (13 / 7)}, FULL_RATES),
    Method("gradual unfreezing", "gradual", {}, FULL_RATES),
    Method("BitFit", "bitfit", {}, (1e-3, 3e-3, 1e-2)),
    Method("Houlsby adapters, m=64", "adapters", {"bottleneck": 64, "placement": "houlsby"}, (3e-4, 1e-3, 3e-3)),
    Method("Pfeiffer adapters, m=64", "adapters", {"bottleneck": 64, "placement": "pfeiffer"}, (3e-4, 1e-3, 3e-3)),
    Method("LoRA r=8, query and value", "lora", {"r": 8, "alpha": 16.0, "target_modules": ["query", "value"]},
           (1e-3, 3e-3, 1e-2)),
    Method("LoRA r=8, every linear layer", "lora",
           {"r": 8, "alpha": 16.0, "target_modules": ["query", "key", "value", "dense"]}, (3e-4, 1e-3, 3e-3)),
    Method("DoRA r=8, query and value", "lora",
           {"r": 8, "alpha": 16.0, "target_modules": ["query", "value"], "use_dora": True}, (1e-3, 3e-3, 1e-2)),
    Method("prompt tuning, 20 tokens", "prompt", {"num_virtual_tokens": 20, "init": "vocab"}, (3e-2, 1e-1, 3e-1)),
    Method("P-tuning v2, 20 tokens", "prefix", {"num_virtual_tokens": 20}, (3e-3, 1e-2, 3e-2)),
)}
PROBE = Method("frozen probe, mean pooling", "probe", {"C": [0.01, 0.1, 1.0]})
CONFIGS = {"adapters": adapters.AdapterConfig, "bitfit": bitfit.BitFitConfig, "layerwise": layerwise.LayerwiseConfig,
           "lora": lora.LoraConfig, "prompt": prompt.PromptConfig, "prefix": prefix.PrefixConfig}
MODULES = {"adapters": adapters, "bitfit": bitfit, "layerwise": layerwise, "lora": lora, "prompt": prompt,
           "prefix": prefix}


class StepBudget:
    """A batch sampler that runs on through the epochs of `batches` (a `data.LengthGroupedBatches`) for `steps`."""

    def __init__(self, batches, steps: int):
        if steps < 1:
            raise ValueError(f"A budget is at least one optimiser step, got steps={steps}.")
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        served = 0
        while served < self.steps:
            for batch in self.batches:
                yield batch
                served += 1
                if served == self.steps:
                    return


def file_sha256(folder: str) -> str:
    """The sha256 of a checkpoint's weights (its safetensors files, in name order), or of its hub id when it has
    no local folder."""
    files = sorted(Path(folder).glob("*.safetensors")) if Path(folder).is_dir() else []
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest() if files else hashlib.sha256(folder.encode()).hexdigest()


def provenance(command: str) -> dict:
    """Where and when a record was computed."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": cpu, "command": command}


class Leaderboard:
    """The fixed task at step budgets: `key` describes a run completely, `run` computes its values."""

    def __init__(self, cfg: runtime.Config, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision is 'fp32' or 'bf16' (bfloat16 autocast), got {precision!r}.")
        self.cfg, self.precision = cfg, precision
        sst2 = data.load_dataset("sst2", seed=0)
        self.label_names = data.label_names(sst2)
        ds = data.sample(sst2, seed=0, train=cfg.pick(smoke=64, local=None), validation=cfg.pick(smoke=16, local=None),
                         test=cfg.pick(smoke=32, local=None))
        self.tokenizer = zoo.load_tokenizer("encoder", cfg)
        self.tokens = data.tokenize(ds, self.tokenizer, MAX_LENGTH)
        for split in ("validation", "test"):  # sorted by length: less padding, and no score depends on the order
            order = np.argsort([len(ids) for ids in self.tokens[split]["input_ids"]], kind="stable")
            self.tokens[split] = self.tokens[split].select(order)
        self.collator = DataCollatorWithPadding(self.tokenizer)
        self.scored = {split: DataLoader(self.tokens[split], batch_size=BATCH_SIZE, collate_fn=self.collator)
                       for split in ("validation", "test")}
        self.sizes = {split: len(part) for split, part in self.tokens.items()}
        checkpoint = zoo.checkpoint("encoder", cfg)
        self.checkpoint = {"name": "all-MiniLM-L6-v2" if cfg.offline and "encoder" not in cfg.models else checkpoint,
                           "sha256": file_sha256(checkpoint)}
        self._probe = None

    # ------------------------------------------------------------------------------------------------ keys
    def key(self, method: Method, lr: float | None, seed: int, steps: int) -> dict:
        """Everything that determines a run."""
        return {"task": TASK, "method": method.name, "technique": method.technique, "config": method.config,
                "lr": lr, "seed": seed, "steps": steps,
                "data": {"name": "sst2", "sample_seed": 0, **self.sizes, "batch_size": BATCH_SIZE,
                         "max_length": MAX_LENGTH},
                "checkpoint": self.checkpoint, "profile": self.cfg.profile, "precision": self.precision,
                "threads": torch.get_num_threads(), "device": self.cfg.device.type,
                "versions": {"mtlib": __version__, "torch": torch.__version__,
                             "transformers": transformers.__version__}}

    # ----------------------------------------------------------------------------------------------- runs
    def train_loader(self, seed: int, steps: int) -> DataLoader:
        lengths = [len(ids) for ids in self.tokens["train"]["input_ids"]]
        batches = data.LengthGroupedBatches(lengths, BATCH_SIZE, torch.Generator().manual_seed(seed))
        return DataLoader(self.tokens["train"], batch_sampler=StepBudget(batches, steps), collate_fn=self.collator)

    def model(self, seed: int) -> torch.nn.Module:
        runtime.seed_everything(seed)
        return zoo.load_model("encoder", self.cfg, num_labels=len(self.label_names))

    def prepare(self, method: Method, model: torch.nn.Module, lr: float, steps: int):
        """Apply the method to a fresh model; returns the optimiser it needs, or None for `fit`'s AdamW."""
        technique = method.technique
        if technique == "full":
            return None
        if technique == "discriminative":
            return torch.optim.AdamW(layerwise.depth_groups(model, lr=lr, decay=method.config["decay"]), fused=True)
        if technique == "gradual":  # the head first, then one more block from the top every steps / (blocks + 1)
            layerwise.apply(model, layerwise.LayerwiseConfig(k=0))
            every = max(1, steps // (len(layerwise.block_names(model)) + 1))
            optimizer = torch.optim.AdamW(layerwise.depth_groups(model, lr=lr, decay=1.0), fused=True)
            return layerwise.unfreeze_gradually(model, optimizer, every)
        config = dict(method.config)
        if "target_modules" in config:
            config["target_modules"] = tuple(config["target_modules"])
        MODULES[technique].apply(model, CONFIGS[technique](**config))
        return None

    def autocast(self):
        return (torch.autocast(self.cfg.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
                else nullcontext())

    def probe(self) -> TrecProbe:
        """The forgetting measure, built once (it reads the pretrained body)."""
        if self._probe is None:
            sizes = self.cfg.pick(smoke={"train": 60, "validation": 30, "test": 50}, local={"train": 2000})
            self._probe = TrecProbe(self.tokenizer, self.model(seed=0), self.cfg.device, **sizes)
        return self._probe

    def run(self, key: dict) -> dict:
        """Train and measure the run that `key` describes (made by `self.key`); returns the record's values."""
        method = METHODS[key["method"]] if key["method"] != PROBE.name else PROBE
        if key != self.key(method, key["lr"], key["seed"], key["steps"]):
            raise ValueError("This key describes another setting than this Leaderboard's (data, checkpoint, "
                             "precision, threads or versions): make it with Leaderboard.key.")
        if method is PROBE:
            return self.run_probe()
        model = self.model(key["seed"])
        optimizer = self.prepare(method, model, key["lr"], key["steps"])
        with measure.usage(self.cfg.device) as used, self.autocast():
            history = fit(model, self.train_loader(key["seed"], key["steps"]), self.scored["validation"], epochs=1,
                          lr=key["lr"], optimizer=optimizer, verbose=False)
        with self.autocast():
            test = predict(model, self.scored["test"], self.cfg.device)
        counted = count_parameters(model)
        with tempfile.TemporaryDirectory() as folder:
            saved = save(model, Path(folder) / "weights.safetensors")
        correct = (test["preds"] == test["labels"]).astype(int)
        return {"val_loss": history.last["val_loss"], "val_accuracy": history.last["val_accuracy"],
                "test_accuracy": float(correct.mean()), "test_correct": "".join(map(str, correct)),
                "train_loss": [round(x, 5) for x in history.steps],
                "trainable": counted["trainable"], "total": counted["total"], "saved_bytes": saved,
                "peak_mib": round(used.peak_mib, 1), "seconds": round(used.seconds, 1),
                **self.probe().forgetting(model)}

    def run_probe(self) -> dict:
        """The practitioner's cheapest control: a logistic regression on the frozen body's mean-pooled states, its C
        chosen on the validation split (as `task.SST2Task.probe`, on the whole splits)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        body = self.model(seed=0).base_model
        train = DataLoader(self.tokens["train"], batch_size=BATCH_SIZE, collate_fn=self.collator)
        features = {split: mean_pooled_features(body, loader, self.cfg.device)
                    for split, loader in (("train", train), *self.scored.items())}
        fits = [make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(*features["train"])
                for c in PROBE.config["C"]]
        best = max(fits, key=lambda f: f.score(*features["validation"]))
        correct = (best.predict(features["test"][0]) == features["test"][1]).astype(int)
        return {"val_accuracy": float(best.score(*features["validation"])), "test_accuracy": float(correct.mean()),
                "test_correct": "".join(map(str, correct)), "trainable": 0, "forgetting": 0.0,
                "C": float(best[-1].C)}


def same_values(a: dict, b: dict) -> list[str]:
    """The measured values on which two records of one key differ, leaving out time and memory (which vary)."""
    skip = ("seconds", "peak_mib")
    return [name for name in sorted(set(a) | set(b)) if name not in skip and json.dumps(a.get(name)) !=
            json.dumps(b.get(name))]


def next_rate(rate: float, up: bool) -> float:
    """The next rate on the book's half-decade grid (1, 3, 10, 30, ... times a power of ten), up or down."""
    exponent = int(np.floor(np.log10(rate) + 1e-9))
    mantissa = round(rate / 10 ** exponent)
    if mantissa not in (1, 3):
        raise ValueError(f"{rate} is not on the half-decade grid (1 or 3 times a power of ten).")
    if up:
        return float(f"{3 * 10 ** exponent:.0e}") if mantissa == 1 else float(f"{10 ** (exponent + 1):.0e}")
    return float(f"{10 ** exponent:.0e}") if mantissa == 3 else float(f"{3 * 10 ** (exponent - 1):.0e}")


def choose_rate(losses: dict[float, float]) -> tuple[float, float | None]:
    """The book's rate rule: the rate with the lowest validation loss. When it sits at an edge of the rates tried,
    also the next rate beyond that edge, to try before the choice stands (None when the choice is interior)."""
    best = min(losses, key=losses.get)
    if len(losses) > 1 and best == min(losses):
        return best, next_rate(best, up=False)
    if len(losses) > 1 and best == max(losses):
        return best, next_rate(best, up=True)
    return best, None
