"""mtlib's LoRA and DoRA against peft's, training steps timed side by side (`make bench`; chapter 09 explains both).

The same checkpoint (the book's encoder under MTLIB_PROFILE, `local` by default), the same batch of the fixed task,
rank 8 on query and value with alpha 16 and no dropout, the head trained, AdamW. Each method trains `--steps` steps
after two warm-up steps, `--repeats` times; the methods take turns (ours, peft, ours, peft, ...) so that a drift in
the machine's load falls on both alike. The goal (issue: Part II, first half): mtlib's step at most 1.1x peft's.

    python scripts/bench_lora.py
    python scripts/bench_lora.py --steps 40 --repeats 7
"""
import argparse
import os
import statistics
import time
import warnings

import torch

os.environ.setdefault("MTLIB_PROFILE", "local")
import mtlib  # noqa: E402
from mtlib.tuning import lora, task  # noqa: E402
from peft import LoraConfig as PeftLoraConfig, get_peft_model  # noqa: E402

# peft calls a transformers property that transformers 5 renamed; the warning is theirs
warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


def ours(dora):
    """A function that puts mtlib's LoRA (or DoRA) into a model and returns the model to train."""
    def prepare(model):
        lora.apply(model, lora.LoraConfig(r=8, alpha=16, target_modules=("query", "value"), use_dora=dora))
        return model
    return prepare


def peft(dora):
    """The same for peft's, with the head trained (`modules_to_save`) as mtlib's is."""
    config = PeftLoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"],
                            modules_to_save=["classifier"], use_dora=dora)
    return lambda model: get_peft_model(model, config)


def seconds_per_step(fixed, prepare, batch, steps):
    """Mean seconds of one training step (forward, backward, AdamW) over `steps` steps, after two warm-up steps."""
    model = prepare(fixed.model(seed=0))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step():
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="turns per method")
    args = parser.parse_args()
    cfg = mtlib.setup()
    fixed = task.SST2Task(cfg)
    batch = {k: v.to(cfg.device) for k, v in next(iter(fixed.loaders(seed=0)["train"])).items()}
    pairs = {"LoRA r=8": (ours(False), peft(False)), "DoRA r=8": (ours(True), peft(True))}
    print(f"batch {tuple(batch['input_ids'].shape)}, {args.steps} steps x {args.repeats} repeats per method")
    print(f"{'method':10} {'mtlib ms/step':>14} {'peft ms/step':>13} {'ratio':>6}  within 1.1x")
    for name, (mine, theirs) in pairs.items():
        times = {"mtlib": [], "peft": []}
        for _ in range(args.repeats):
            times["mtlib"].append(seconds_per_step(fixed, mine, batch, args.steps))
            times["peft"].append(seconds_per_step(fixed, theirs, batch, args.steps))
        a, b = (1000 * statistics.median(times[k]) for k in ("mtlib", "peft"))
        spread = {k: 1000 * (max(v) - min(v)) / 2 for k, v in times.items()}
        print(f"{name:10} {a:8.1f} ± {spread['mtlib']:<4.1f} {b:7.1f} ± {spread['peft']:<4.1f} {a / b:6.2f}  "
              f"{'yes' if a / b <= 1.1 else 'NO'}")
    print("median over repeats; ± half the range")


if __name__ == "__main__":
    main()
