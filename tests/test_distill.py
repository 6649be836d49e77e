"""mtlib.distill: the soft loss against its formula, its direction, per-token averaging, and the tutorial bug."""
import pytest
import torch
import torch.nn.functional as F

from mtlib.distill import distillation_loss, hidden_cosine_loss, soft_loss


def logits(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_soft_loss_is_t_squared_kl_teacher_to_student():
    s, t, T = logits(5, 4), logits(5, 4, seed=1), 3.0
    p_t, p_s = torch.softmax(t / T, -1), torch.softmax(s / T, -1)
    expected = T ** 2 * (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    torch.testing.assert_close(soft_loss(s, t, T), expected)
    reverse = T ** 2 * (p_s * (p_s.log() - p_t.log())).sum(-1).mean()
    torch.testing.assert_close(soft_loss(s, t, T, direction="reverse"), reverse)
    assert not torch.isclose(expected, reverse)
    assert soft_loss(t, t, T).abs().item() < 1e-6


def test_probabilities_fed_to_kl_div_compute_something_else():
    """The version often seen in tutorials: probabilities as kl_div's input. Its value is not the KL and its
    gradient is not the student's."""
    s, t, T = logits(5, 4).requires_grad_(), logits(5, 4, seed=1), 2.0
    wrong = F.kl_div(torch.softmax(s / T, -1), torch.softmax(t / T, -1), reduction="batchmean")
    right = soft_loss(s, t, T) / T ** 2
    assert not torch.isclose(wrong, right, rtol=0.1)
    assert soft_loss(t, t, T).abs().item() < 1e-6 < F.kl_div(torch.softmax(t / T, -1), torch.softmax(t / T, -1),
                                                             reduction="batchmean").abs().item()


def test_tokens_are_averaged_over_real_tokens_only():
    s, t = logits(2, 3, 7), logits(2, 3, 7, seed=1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    keep = mask.reshape(-1).bool()
    per_token = torch.stack([soft_loss(s.reshape(-1, 7)[i:i + 1], t.reshape(-1, 7)[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(soft_loss(s, t, mask=mask), per_token[keep].mean())


def test_t_squared_keeps_the_gradient_comparable_across_temperatures():
    s, t = logits(64, 5), logits(64, 5, seed=1)
    norms = []
    for T in (1.0, 4.0, 16.0):
        x = s.clone().requires_grad_()
        soft_loss(x, t, T).backward()
        norms.append(x.grad.norm().item())
    # d(KL)/ds = (q - p) / T, and at high T, q - p is about (s - t) / (T * classes): without T^2 the gradient would
    # shrink as 1 / T^2; with it, it tends to (s - t) / classes, the same at every high temperature (Hinton et al.)
    assert 0.8 < norms[2] / norms[1] < 1.25, norms


def test_distillation_loss_mixes_soft_and_hard():
    s, t, y = logits(6, 2), logits(6, 2, seed=1), torch.tensor([0, 1, 1, 0, 1, 0])
    mixed = distillation_loss(s, t, y, temperature=2.0, alpha=0.3)
    torch.testing.assert_close(mixed, 0.3 * soft_loss(s, t, 2.0) + 0.7 * F.cross_entropy(s, y))
    torch.testing.assert_close(distillation_loss(s, t, None, alpha=1.0), soft_loss(s, t, 2.0))
    with pytest.raises(ValueError, match="pass labels"):
        distillation_loss(s, t, None, alpha=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        distillation_loss(s, t, y, alpha=2.0)


def test_hidden_cosine_loss_and_errors():
    h = logits(2, 3, 8)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert hidden_cosine_loss(h, h * 2.5, mask).abs().item() < 1e-6  # the direction, not the length
    assert hidden_cosine_loss(h, -h, mask).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="same width"):
        hidden_cosine_loss(h, logits(2, 3, 4), mask)
    with pytest.raises(ValueError, match="differ in shape"):
        soft_loss(logits(2, 3), logits(2, 4))
    with pytest.raises(ValueError, match="forward"):
        soft_loss(logits(2, 3), logits(2, 3), direction="backward")
