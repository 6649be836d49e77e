"""Forgetting: how much of what a pretrained body knew is lost by fine-tuning it for another task (chapter 17;
chapters 12 and 13 reuse it).

The measure is a linear probe for a task the body was never tuned on, TREC question types (6 classes): a logistic
regression on the body's mean-pooled token states, trained on TREC's training questions and scored on its 500 test
questions. Forgetting is the probe's accuracy on the pretrained body minus its accuracy on the tuned body, in points:
positive when the body lost information a reader would reuse for a new head.

Forgetting of LoRA, adapters, prompts and prefixes is read with their module in place (the tuned model as it runs);
with the module removed, their body is the pretrained one and forgets nothing, by construction.

Why this measure and not a language-model loss on general text (peft's method comparison): the offline encoder ships
without a trained masked-LM head (chapter 04), so its masked-LM loss says little; a probe needs no head, reads the
representation that the next task would build on, and works the same for every profile and architecture.

The probe's regularisation C is chosen once, on the pretrained body (on a validation tenth of TREC's training set),
and then kept for every body, so that the instrument is the same for all.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding

from . import data

PROBE_CS = (0.01, 0.1, 1.0)


@torch.no_grad()
def text_features(model: torch.nn.Module, loader, device) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled last-layer token states of a classifier's body, with whatever a technique added still in place.

    The whole model runs (so that hooks that add a soft prompt or a prefix act) and its last hidden states are read;
    a soft prompt's positions, put in front of the text, are left out of the mean.
    """
    model.eval()
    vectors, labels = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        labels.append(batch.pop("labels").cpu())
        mask = batch["attention_mask"].unsqueeze(-1).float()
        states = model(**batch, output_hidden_states=True).hidden_states[-1][:, -mask.shape[1]:].float()
        vectors.append(((states * mask).sum(1) / mask.sum(1)).cpu())
    return torch.cat(vectors).numpy(), torch.cat(labels).numpy()


def fit_linear_probe(train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray], Cs):
    """A logistic regression on standardised features, its C chosen on `validation` from `Cs` (the best-scoring
    pipeline, refitted on nothing more): the frozen-feature control of chapters 07 and 17."""
    fits = [scaled_logistic_regression(C).fit(*train) for C in Cs]
    return max(fits, key=lambda fitted: fitted.score(*validation))


def scaled_logistic_regression(C: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000))


class TrecProbe:
    """The forgetting measure: `probe.forgetting(model)` in accuracy points (pretrained minus tuned)."""

    def __init__(self, tokenizer, pretrained: torch.nn.Module, device, seed: int = 0, **sizes: int):
        """`pretrained`: a freshly loaded classifier of the same checkpoint (its body is the reference).
        `sizes`: fewer TREC questions per split (the results store's probe learns from `train=2000`); by default
        all of them, 4,906 training questions (a tenth of TREC's training set is held out for choosing C) and the 500
        test questions."""
        trec = data.sample(data.load_dataset("trec", seed=seed), seed=seed, **sizes)
        collator = DataCollatorWithPadding(tokenizer)  # every split in its own order: the same batches every time
        self.loaders = {split: DataLoader(part, batch_size=64, collate_fn=collator)
                        for split, part in data.tokenize(trec, tokenizer, max_length=64).items()}
        self.device = device
        features = {split: text_features(pretrained, loader, device) for split, loader in self.loaders.items()}
        best = fit_linear_probe(features["train"], features["validation"], PROBE_CS)
        self.C = float(best[-1].C)
        self.before = float(best.score(*features["test"]))

    def accuracy(self, model: torch.nn.Module) -> float:
        """The probe's test accuracy on `model`'s body (trained on that body's own features)."""
        train = text_features(model, self.loaders["train"], self.device)
        test = text_features(model, self.loaders["test"], self.device)
        return float(scaled_logistic_regression(self.C).fit(*train).score(*test))

    def forgetting(self, model: torch.nn.Module) -> dict:
        """The probe's accuracy before (pretrained body) and after (this body), and the drop in points."""
        after = self.accuracy(model)
        return {"probe_before": self.before, "probe_after": after, "forgetting": 100 * (self.before - after)}
