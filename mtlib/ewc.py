"""Elastic weight consolidation (chapter 12; its online form, chapter 13): while a model learns task B, a penalty
keeps each weight that mattered for an earlier task A near its value after A, weighted by the diagonal of the Fisher
information of A's data (Kirkpatrick et al. 2017):

    loss_B(theta) + (lam / 2) * sum_i F_i * (theta_i - theta_A,i)^2

    fisher = fisher_diagonal(model, loader_a, device)           # after training on A
    ewc = EWC(model, fisher, lam=1e3)                            # anchors at the current weights
    fit(model, loader_b, loss_fn=lambda out, batch: out.loss + ewc.penalty(model))
"""
from __future__ import annotations

import torch


def fisher_diagonal(model: torch.nn.Module, loader, device, labels: str = "empirical",
                    max_examples: int | None = None) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of the trainable parameters: the mean over examples of each parameter's squared gradient
    of the log-likelihood, one example at a time (squaring a batch's mean gradient is another quantity, which
    shrinks towards zero as the batch grows). The model is in eval mode (no dropout) while it is computed.

    labels="empirical": the gradient at each example's true label (the empirical Fisher);
    labels="model": the expectation over the model's own predictive distribution, exact for a few classes: one
    backward pass per class, weighted by its probability (the Fisher proper).
    """
    if labels not in ("empirical", "model"):
        raise ValueError(f"labels is 'empirical' (the true labels) or 'model' (the model's own distribution), "
                         f"got {labels!r}.")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("No parameter requires a gradient: the Fisher is computed for the trainable parameters.")
    fisher = {name: torch.zeros_like(p) for name, p in params.items()}
    training, seen = model.training, 0
    model.eval()
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        targets = batch.pop("labels")
        for i in range(len(targets)):
            if max_examples is not None and seen >= max_examples:
                break
            log_probs = torch.log_softmax(model(**{k: v[i:i + 1] for k, v in batch.items()}).logits[0], dim=-1)
            if labels == "empirical":
                terms = [(int(targets[i]), 1.0)]
            else:
                terms = list(enumerate(log_probs.detach().exp().tolist()))
            for k, (c, weight) in enumerate(terms):
                grads = torch.autograd.grad(log_probs[c], list(params.values()), retain_graph=k < len(terms) - 1,
                                            allow_unused=True)
                for name, grad in zip(params, grads):
                    if grad is not None:
                        fisher[name] += weight * grad.detach() ** 2
            seen += 1
    model.train(training)
    if seen == 0:
        raise ValueError("The loader gave no example: the Fisher is a mean over examples.")
    return {name: f / seen for name, f in fisher.items()}


def uniform_like(fisher: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Fisher's mean in every place: EWC's penalty becomes plain L2 towards the anchor with the same total weight,
    the control that asks whether the Fisher's choice of which weights to hold matters (at the same lambda)."""
    level = sum(f.sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values())
    return {name: torch.full_like(f, float(level)) for name, f in fisher.items()}


class EWC:
    """The penalty (lam / 2) * sum_i F_i * (theta_i - anchor_i)^2 over the parameters that `fisher` names, anchored
    at the model's weights when it is made."""

    def __init__(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor], lam: float):
        params = dict(model.named_parameters())
        missing = sorted(set(fisher) - set(params))
        if missing:
            raise ValueError(f"The Fisher names parameters this model lacks ({', '.join(missing[:3])}...): compute it "
                             "on the same architecture.")
        self.fisher, self.lam = fisher, lam
        self.anchor = {name: params[name].detach().clone() for name in fisher}

    def penalty(self, model: torch.nn.Module) -> torch.Tensor:
        params = dict(model.named_parameters())
        return self.lam / 2 * sum((self.fisher[name] * (params[name] - anchor) ** 2).sum()
                                  for name, anchor in self.anchor.items())

    def consolidate(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor], gamma: float = 1.0) -> None:
        """Online EWC (Huszar 2018; Schwarz et al. 2018): after another task, one penalty, its Fisher the decayed old
        one plus the new, centred on the latest weights (not one penalty per task)."""
        params = dict(model.named_parameters())
        self.fisher = {name: gamma * f + fisher[name] for name, f in self.fisher.items()}
        self.anchor = {name: params[name].detach().clone() for name in self.fisher}
