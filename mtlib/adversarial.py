"""Adversarial training (chapter 15): perturbations in embedding space, FGM (one step, Miyato et al. 2017) and PGD
(several projected steps, Madry et al. 2018) on the input embeddings, the vectors the first layer reads.

The perturbation is added to `inputs_embeds`, the token embeddings looked up for one batch: not to the embedding
matrix (a decoder ties it to its output head, and a change there would move every sentence at once), not to the
position embeddings, and not to the integer token ids (a small change to an id is another word, or no word: ids have
no gradient). Padding positions are left alone. Each example's perturbation has an L2 norm of at most epsilon.
Domain-adversarial training's gradient-reversal layer is here too.

    loss = adversarial_loss(model, batch, epsilon=1.0, steps=1)     # FGM: the loss at the perturbed embeddings
    fit(model, loader, loss_fn=lambda out, batch: out.loss + adversarial_loss(model, batch, 1.0))
"""
from __future__ import annotations

import torch


def per_example_norm(x: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each example's perturbation (over its tokens and features), shaped to divide x."""
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def perturbation(model: torch.nn.Module, batch: dict, epsilon: float, steps: int = 1,
                 step_size: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, delta): the batch's input embeddings (detached) and the perturbation of norm at most `epsilon`
    per example that raises the loss most to first order: `steps` gradient steps, each normalised per example to length
    `step_size` and projected back onto the epsilon-ball. One step of epsilon is FGM; several are PGD (default step
    2.5 epsilon / steps, Madry et al.'s choice)."""
    if epsilon <= 0 or steps < 1:
        raise ValueError(f"epsilon must be positive and steps at least 1, got epsilon={epsilon}, steps={steps}.")
    if step_size is None:
        step_size = epsilon if steps == 1 else 2.5 * epsilon / steps
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}
    embeddings = model.get_input_embeddings()(batch["input_ids"]).detach()
    mask = batch["attention_mask"].unsqueeze(-1).to(embeddings.dtype)
    delta = torch.zeros_like(embeddings)
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = model(inputs_embeds=embeddings + delta * mask, **inputs).loss
        grad, = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = delta + step_size * grad * mask / per_example_norm(grad * mask)
            delta = delta * (epsilon / per_example_norm(delta)).clamp(max=1.0)  # back onto the epsilon-ball
    return embeddings, (delta * mask).detach()


def adversarial_loss(model: torch.nn.Module, batch: dict, epsilon: float, steps: int = 1,
                     step_size: float | None = None) -> torch.Tensor:
    """The model's loss at the perturbed embeddings, with gradients for the model's parameters (adversarial
    training adds it to the clean loss). The embeddings are looked up again, so the embedding rows train too."""
    _, delta = perturbation(model, batch, epsilon, steps, step_size)
    inputs = {k: v for k, v in batch.items() if k != "input_ids"}
    return model(inputs_embeds=model.get_input_embeddings()(batch["input_ids"]) + delta, **inputs).loss


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward; the gradient times -lambda on the way back (Ganin et al. 2016): the features
    learn to fool the domain classifier that sits behind it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


def reversal_weight(progress: float, gamma: float = 10.0) -> float:
    """Ganin et al.'s schedule for lambda: 2 / (1 + exp(-gamma p)) - 1, from 0 at the start of training (p = 0) to
    nearly 1 at its end (p = 1), so that the domain classifier's noisy early signal does not disturb the features."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress is the fraction of training done, between 0 and 1, got {progress}.")
    return float(2.0 / (1.0 + torch.exp(torch.tensor(-gamma * progress))) - 1.0)
