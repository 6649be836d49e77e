"""Knowledge distillation's losses (chapter 14): a student learns from a teacher's softened distribution
(Hinton et al. 2015), and optionally from its hidden states (DistilBERT's cosine term).

    loss = alpha * soft_loss(student_logits, teacher_logits, T) + (1 - alpha) * cross_entropy(student_logits, labels)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0,
              direction: str = "forward", mask: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL between the teacher's and the student's distributions at temperature T, averaged over examples.

    direction="forward": KL(teacher || student), the usual one (the student covers every mode of the teacher);
    "reverse": KL(student || teacher) (the student settles on the teacher's largest modes). `F.kl_div(input,
    target)` computes KL(target || input) and wants log-probabilities as its input: both are given as logs here.
    Logits of any shape (..., classes): a decoder's (batch, tokens, vocab) are flattened over tokens, so that the
    mean is per token, not per sequence; `mask` (batch, tokens) keeps the real tokens only. The factor T^2 keeps the
    gradients' size comparable across temperatures.
    """
    if direction not in ("forward", "reverse"):
        raise ValueError(f"direction is 'forward' (KL(teacher || student)) or 'reverse', got {direction!r}.")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"Student and teacher logits differ in shape: {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}; distil over the same examples and classes.")
    classes = student_logits.shape[-1]
    student = F.log_softmax(student_logits.reshape(-1, classes) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.reshape(-1, classes).detach() / temperature, dim=-1)
    if mask is not None:
        keep = mask.reshape(-1).bool()
        student, teacher = student[keep], teacher[keep]
    if direction == "forward":
        kl = F.kl_div(student, teacher, reduction="batchmean", log_target=True)
    else:
        kl = F.kl_div(teacher, student, reduction="batchmean", log_target=True)
    return temperature ** 2 * kl


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    """alpha * the soft loss + (1 - alpha) * cross-entropy with the true labels (alpha = 1: labels not used, as
    on a transfer set that the teacher labelled)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs the soft loss against the labels: between 0 and 1, got {alpha}.")
    loss = alpha * soft_loss(student_logits, teacher_logits, temperature)
    if alpha < 1.0:
        if labels is None:
            raise ValueError("alpha < 1 mixes in the cross-entropy with the true labels: pass labels, or alpha=1.")
        loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
    return loss


def hidden_cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                       mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT's third term: 1 - cosine similarity between the student's and the teacher's last hidden states,
    averaged over the real tokens (mask 1). The two must have the same width."""
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(f"Hidden states differ in shape: {tuple(student_hidden.shape)} and "
                         f"{tuple(teacher_hidden.shape)}; the cosine term needs the same width (or a projection).")
    keep = mask.bool()
    cosine = F.cosine_similarity(student_hidden[keep], teacher_hidden[keep].detach(), dim=-1)
    return (1 - cosine).mean()
