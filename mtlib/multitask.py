"""Multi-task learning (chapter 16): one encoder, one head per task, batches of one task at a time, the task of each
batch drawn by a sampling rule.

    model = MultiHeadClassifier(body, {"sst2": 2, "trec": 6})
    for task, batch in TaskBatches(loaders, temperature=2.0, steps=1000, seed=0):
        loss = model(task, **batch).loss
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput


def sampling_probabilities(sizes: dict[str, int], temperature: float = 1.0) -> dict[str, float]:
    """The chance that a batch comes from each task: proportional to size ** (1 / T). T = 1: proportional to the
    data (the big task dominates); T -> infinity: uniform (the small task is seen as often as the big one, and
    overfitted); T of 2 to 5 lies between (Arivazhagan et al. 2019)."""
    if temperature <= 0:
        raise ValueError(f"The temperature must be positive (1: proportional, larger: flatter), got {temperature}.")
    if not sizes or min(sizes.values()) < 1:
        raise ValueError(f"Every task needs at least one example; got sizes {sizes}.")
    weights = {task: n ** (1.0 / temperature) for task, n in sizes.items()}
    total = sum(weights.values())
    return {task: w / total for task, w in weights.items()}


class TaskBatches:
    """`steps` batches, each from one task drawn at random with `sampling_probabilities`; each task's loader is
    restarted when it runs out. temperature=float("inf") samples the tasks uniformly."""

    def __init__(self, loaders: dict, temperature: float, steps: int, seed: int = 0):
        sizes = {task: len(loader.dataset) for task, loader in loaders.items()}
        if np.isinf(temperature):
            self.probabilities = {task: 1.0 / len(sizes) for task in sizes}
        else:
            self.probabilities = sampling_probabilities(sizes, temperature)
        self.loaders, self.steps, self.seed = loaders, steps, seed

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        rng = np.random.default_rng(self.seed)
        tasks = list(self.probabilities)
        iterators = {task: iter(loader) for task, loader in self.loaders.items()}
        for task in rng.choice(tasks, size=self.steps, p=[self.probabilities[t] for t in tasks]):
            try:
                batch = next(iterators[task])
            except StopIteration:
                iterators[task] = iter(self.loaders[task])
                batch = next(iterators[task])
            yield str(task), batch


class MultiHeadClassifier(nn.Module):
    """A shared body (e.g. `AutoModel`) and one linear head per task on its mean-pooled last hidden states."""

    def __init__(self, body: nn.Module, num_labels: dict[str, int]):
        super().__init__()
        self.body = body
        width = body.config.hidden_size
        self.heads = nn.ModuleDict({task: nn.Linear(width, n) for task, n in num_labels.items()})

    def forward(self, task: str, input_ids, attention_mask, labels=None, **inputs) -> SequenceClassifierOutput:
        if task not in self.heads:
            raise ValueError(f"No head for task {task!r}; the heads are {sorted(self.heads)}.")
        states = self.body(input_ids=input_ids, attention_mask=attention_mask, **inputs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        logits = self.heads[task]((states * mask).sum(1) / mask.sum(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
