"""The runs of the results store (chapter 17): every technique and its controls on the fixed task, at step budgets
long enough to answer "which method, and how long?".

The task is Part II's (the encoder on SST-2, batches of 32 grouped by length, at most 64 tokens, chapter 02's
recipe: AdamW, linear decay after 10% warm-up, weight decay on matrices, gradients clipped at 1), on the whole
splits: 6,920 training, 872 validation and 1,821 test sentences. A budget is a number of optimiser steps; the
batches run on through as many epochs as it takes. Each method has a grid of at least three rates; the store's script
picks the rate with the lowest validation loss on the first seed, extends the grid while the choice sits at its edge
(a half-decade at a time), then runs the other seeds at that rate (the book's rate rule).

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from .. import __version__, data, freeze, measure, runtime, zoo
from ..forgetting import PROBE_CS, TrecProbe, fit_linear_probe
from ..params import count_parameters
from ..train import fit, predict
from . import adapters, bitfit, layerwise, lora, prefix, prompt
from .common import save
from .task import BATCH_SIZE, MAX_LENGTH, mean_pooled_features

TASK = "sst2-encoder"
SEEDS = (0, 1, 2)
RUN_FORMAT = 1  # bump by hand whenever a change to the code of a run changes its results: old records stop matching
RECIPE = {"optimizer": "AdamW (fused)", "schedule": "linear", "warmup": 0.1, "weight_decay": 0.01,
          "decay": "matrices only", "max_grad_norm": 1.0, "batch_size": BATCH_SIZE, "max_length": MAX_LENGTH,
          "batches": "grouped by length"}


@dataclass(frozen=True)
class Method:
    """A row of the leaderboard: how to prepare a freshly loaded classifier, and the rates to choose from."""

    name: str
    technique: str  # "full", "discriminative", "gradual", "probe", or a module of mtlib.tuning
    config: dict = field(default_factory=dict)
    rates: tuple[float, ...] = ()

    def __post_init__(self):
        if self.technique != "probe" and len(self.rates) < 3:
            raise ValueError(f"{self.name}: the book's rate rule chooses from a grid of at least three rates, got "
                             f"{self.rates}.")

    def full_config(self) -> dict:
        """The config with every default filled in, as the run uses it (for the key)."""
        if self.technique not in CONFIGS:
            return dict(self.config)
        return json.loads(json.dumps(asdict(CONFIGS[self.technique](**self.config)), default=list))


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
        if len(batches) == 0:
            raise ValueError("The training split has no rows, so no budget can be served from it.")
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


def folder_sha256(folder: str) -> str:
    """The sha256 of a checkpoint folder's files (weights, config, tokenizer), names and contents in name order."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"The store's runs need a local checkpoint folder to hash, and {folder!r} is none: point the "
                         "encoder role at a folder (a hub model: its snapshot folder in the Hugging Face cache).")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def versions() -> dict:
    """The versions of the libraries whose code computes a record."""
    import accelerate
    import sklearn

    return {"mtlib": __version__, "run_format": RUN_FORMAT, "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "numpy": np.__version__, "sklearn": sklearn.__version__}


def source_sha256() -> str:
    """The sha256 of mtlib's Python source as it is now (for provenance: which code computed a record)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance(command: str) -> dict:
    """Where and when a record was computed: take it when the computing process starts, before the code can change
    under it (the commit, "-dirty" with uncommitted changes, and the hash of mtlib's source), and set the date per
    record."""
    try:  # "-dirty" when the working tree had changes that no commit holds
        commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], capture_output=True,
                                text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"commit": commit, "mtlib_sha256": source_sha256(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "cpu": cpu, "command": command}


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
        if not Path(checkpoint).is_dir():  # a hub id: its snapshot folder in the Hugging Face cache
            from huggingface_hub import snapshot_download
            checkpoint = snapshot_download(checkpoint)
        self.checkpoint = {"name": "all-MiniLM-L6-v2" if cfg.offline and "encoder" not in cfg.models else checkpoint,
                           "sha256": folder_sha256(checkpoint)}
        self.data_files = [f.sha256 for f in data.REGISTRY["sst2"].files]
        self._probe = None

    # ------------------------------------------------------------------------------------------------ keys
    def key(self, method: Method, lr: float | None, seed: int, steps: int) -> dict:
        """Everything that determines a run."""
        return {"task": TASK, "method": method.name, "technique": method.technique, "config": method.full_config(),
                "lr": lr, "seed": seed, "steps": steps, "recipe": RECIPE,
                "data": {"name": "sst2", "sha256": self.data_files, "sample_seed": 0, **self.sizes},
                "forgetting_probe": {"task": "trec", **self.probe_sizes(), "C": list(PROBE_CS), "max_length": 64},
                "checkpoint": self.checkpoint, "profile": self.cfg.profile, "precision": self.precision,
                "threads": torch.get_num_threads(), "device": self.cfg.device.type,
                "cpu_capability": torch.backends.cpu.get_cpu_capability(), "versions": versions()}

    def probe_sizes(self) -> dict:
        """TREC questions per split for the forgetting probe (the whole split where not named)."""
        return self.cfg.pick(smoke={"train": 30, "validation": 16, "test": 24}, local={"train": 2000})

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
            self._probe = TrecProbe(self.tokenizer, self.model(seed=0), self.cfg.device, **self.probe_sizes())
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
        return self.train_and_measure(model, key["lr"], key["seed"], key["steps"], optimizer)

    def train_and_measure(self, model: torch.nn.Module, lr: float, seed: int, steps: int, optimizer=None) -> dict:
        """Train a prepared model (a technique applied, or a chapter's own preparation) on `seed`'s batches for
        `steps` at `lr` with the store's recipe, then measure it as a record's values: validation and test scores,
        per-sentence test correctness, the loss curve, sizes, memory, time and forgetting."""
        with measure.usage(self.cfg.device) as used, self.autocast():
            history = fit(model, self.train_loader(seed, steps), self.scored["validation"], epochs=1, lr=lr,
                          optimizer=optimizer, verbose=False)
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
        model = self.model(seed=0)
        train = DataLoader(self.tokens["train"], batch_size=BATCH_SIZE, collate_fn=self.collator)
        features = {split: mean_pooled_features(model.base_model, loader, self.cfg.device)
                    for split, loader in (("train", train), *self.scored.items())}
        best = fit_linear_probe(features["train"], features["validation"], PROBE.config["C"])
        correct = (best.predict(features["test"][0]) == features["test"][1]).astype(int)
        return {"val_accuracy": float(best.score(*features["validation"])), "test_accuracy": float(correct.mean()),
                "test_correct": "".join(map(str, correct)), "trainable": 0, "C": float(best[-1].C),
                **self.probe().forgetting(model)}  # the pretrained body itself: zero by construction, measured


def same_values(a: dict, b: dict) -> list[str]:
    """The measured values on which two records of one key differ, leaving out time and memory (which vary)."""
    skip = ("seconds", "peak_mib")
    return [name for name in sorted(set(a) | set(b)) if name not in skip and json.dumps(a.get(name)) !=
            json.dumps(b.get(name))]
