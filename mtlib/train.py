"""One training loop for every chapter, on Hugging Face Accelerate (chapter 02 writes it out and explains it).

It runs unchanged on a CPU, one GPU (with fp16 mixed precision) or several GPUs (`accelerate launch`), supports a
learning-rate schedule and gradient accumulation, and prints one plain line per epoch, which reads well in the
stored outputs of the website.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from transformers import get_scheduler

from .metrics import accuracy, macro_f1


class LabelError(ValueError):
    """Labels that the model's head cannot predict."""


@dataclass
class History:
    """What `fit` measured: one row per epoch, the training loss of every batch, the epoch whose weights it kept."""

    epochs: list[dict] = field(default_factory=list)
    steps: list[float] = field(default_factory=list)
    best_epoch: int | None = None

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.epochs).set_index("epoch")

    @property
    def last(self) -> dict:
        return self.epochs[-1]


def check_labels(labels: torch.Tensor, num_labels: int) -> None:
    """Raise a clear error when a label falls outside the head's classes 0..num_labels-1."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_labels):
        raise LabelError(
            f"Labels out of range: found labels {labels.min().item()}..{labels.max().item()}, but the model's head "
            f"has {num_labels} outputs (classes 0..{num_labels - 1}). Load the model with num_labels equal to the "
            "number of classes (mtlib.data.label_names(ds) lists them).")


def make_accelerator(grad_accum: int = 1) -> Accelerator:
    """An Accelerator: fp16 mixed precision on CUDA, full precision elsewhere."""
    return Accelerator(mixed_precision="fp16" if torch.cuda.is_available() else "no",
                       gradient_accumulation_steps=grad_accum)


def decay_groups(model, weight_decay: float) -> list[dict]:
    """The trainable parameters in two optimiser groups: matrices decayed, biases and norm weights (1-D) not.

    Decay pulls a weight towards zero; for a bias or a LayerNorm scale zero is no simpler than any other value, so
    fine-tuning recipes (and transformers' `Trainer`) leave them out. Chapter 01 explains weight decay.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in trainable if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0}]


@torch.no_grad()
def predict(model, loader, device=None) -> dict:
    """Mean loss, predictions and labels of a classifier over a loader (labels and loss when the batches have them)."""
    model.eval()
    device = device or next(model.parameters()).device
    losses, preds, labels = [], [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        out = model(**batch)
        preds.append(out.logits.argmax(-1).cpu())
        if "labels" in batch:
            losses.append(out.loss.item() * len(batch["labels"]))
            labels.append(batch["labels"].cpu())
    result = {"preds": torch.cat(preds).numpy()}
    if labels:
        result["labels"] = torch.cat(labels).numpy()
        result["loss"] = float(np.sum(losses) / len(result["labels"]))
    return result


def evaluate(model, loader, device=None) -> dict:
    """Loss, accuracy and macro-F1 of a classifier on a labelled loader."""
    out = predict(model, loader, device)
    num_labels = model.config.num_labels
    return {"loss": out["loss"], "accuracy": accuracy(out["preds"], out["labels"]),
            "macro_f1": macro_f1(out["preds"], out["labels"], num_labels)}


def fit(model, train_loader, val_loader=None, *, epochs: int = 1, lr: float = 5e-5, weight_decay: float = 0.01,
        optimizer=None, scheduler: str | None = "linear", warmup: float = 0.1, grad_accum: int = 1,
        max_grad_norm: float | None = 1.0, loss_fn=None, keep_best: str | None = None, patience: int | None = None,
        log_every: int | None = None, verbose: bool = True) -> History:
    """Train `model` for `epochs` epochs; evaluate on `val_loader` after each one. Returns a `History`.

    optimizer: defaults to AdamW over the parameters that require gradients (the frozen ones are left out), with
    `weight_decay` on the matrices only (`decay_groups`).
    scheduler: a transformers schedule name (`linear`, `cosine`, `constant`...) with `warmup` as a fraction of the
    steps, or None for a constant learning rate. loss_fn(outputs, batch) replaces the model's own loss.
    keep_best: "accuracy" or "macro_f1" (higher is better) or "loss" (lower is better) on `val_loader`: the model
    ends with the weights of its best epoch (`history.best_epoch`); with `patience`, training stops once that many
    epochs in a row bring no new best (early stopping).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if len(train_loader) == 0:
        raise ValueError("The training loader is empty: the train split has no rows.")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("No parameter requires a gradient: unfreeze something before training.")
    if keep_best is not None and (val_loader is None or keep_best not in ("loss", "accuracy", "macro_f1")):
        raise ValueError(f"keep_best takes 'loss', 'accuracy' or 'macro_f1' and needs a validation loader; got "
                         f"keep_best={keep_best!r} and {'a' if val_loader is not None else 'no'} validation loader.")
    if patience is not None and (keep_best is None or patience < 1):
        raise ValueError(f"patience counts epochs without a new best: it needs keep_best and must be at least 1, got "
                         f"patience={patience!r} with keep_best={keep_best!r}.")
    accelerator = make_accelerator(grad_accum)
    # fused: one kernel for every tensor's update, faster than a loop over them (CPU and CUDA)
    optimizer = optimizer or torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, fused=True)
    steps = epochs * -(-len(train_loader) // grad_accum)
    schedule = get_scheduler(scheduler, optimizer, num_warmup_steps=int(warmup * steps),
                             num_training_steps=steps) if scheduler else None
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    num_labels = getattr(model.config, "num_labels", None) if hasattr(model, "config") else None
    history, best = History(), None  # best: (score, epoch, weights on the CPU)
    for epoch in range(1, epochs + 1):
        model.train()
        start, total, count = time.perf_counter(), 0.0, 0
        for i, batch in enumerate(train_loader, 1):
            if num_labels and "labels" in batch and batch["labels"].dim() == 1:
                check_labels(batch["labels"], num_labels)
            with accelerator.accumulate(model):
                out = model(**batch)
                loss = loss_fn(out, batch) if loss_fn else out.loss
                accelerator.backward(loss)
                if max_grad_norm and accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                if schedule is not None and accelerator.sync_gradients:
                    schedule.step()
                optimizer.zero_grad()
            history.steps.append(loss.item())
            total, count = total + loss.item(), count + 1
            if verbose and log_every and i % log_every == 0:
                print(f"  step {i}/{len(train_loader)}  loss {total / count:.4f}", flush=True)
        row = {"epoch": epoch, "train_loss": total / count, "seconds": time.perf_counter() - start}
        if val_loader is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, val_loader, accelerator.device).items()})
        history.epochs.append(row)
        if verbose:
            print(f"epoch {epoch}/{epochs}  " + "  ".join(
                f"{k} {v:.4f}" if k != "seconds" else f"({v:.1f} s)" for k, v in row.items() if k != "epoch"),
                flush=True)
        if keep_best is not None:
            score = -row["val_loss"] if keep_best == "loss" else row[f"val_{keep_best}"]
            if best is None or score > best[0]:
                best = (score, epoch, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
            elif patience is not None and epoch - best[1] >= patience:
                break
    if best is not None:
        model.load_state_dict(best[2])
        history.best_epoch = best[1]
    accelerator.free_memory()
    return history
