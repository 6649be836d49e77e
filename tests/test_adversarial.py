"""mtlib.adversarial: perturbations of the input embeddings within an epsilon-ball, that raise the loss."""
import pytest
import torch

from mtlib.adversarial import adversarial_loss, perturbation
from tiny_models import batch, one_thread, tiny_bert, tiny_gpt2  # noqa: F401 (one_thread: a fixture)


def padded(n=4):
    inputs = batch(n=n, length=7)
    inputs["attention_mask"][0, 5:] = 0  # the first example ends two tokens early
    return inputs


def loss_at(model, inputs, embeddings, delta):
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    with torch.no_grad():
        return model(inputs_embeds=embeddings + delta, **rest).loss.item()


@pytest.mark.parametrize("steps", [1, 5])
def test_perturbation_stays_in_the_ball_and_off_the_padding(steps):
    model, inputs = tiny_bert(), padded()
    embeddings, delta = perturbation(model, inputs, epsilon=0.5, steps=steps)
    norms = delta.flatten(1).norm(dim=1)
    assert (norms <= 0.5 + 1e-5).all() and (norms > 0.4).all()
    assert delta[0, 5:].abs().max().item() == 0.0
    torch.testing.assert_close(embeddings, model.get_input_embeddings()(inputs["input_ids"]))


@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt2])
def test_the_attack_raises_the_loss_more_than_noise_of_the_same_size(make):
    model, inputs = make(), padded()
    embeddings, fgm = perturbation(model, inputs, epsilon=1.0)
    _, pgd = perturbation(model, inputs, epsilon=1.0, steps=10)
    noise = torch.randn_like(fgm) * inputs["attention_mask"].unsqueeze(-1)
    noise = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1)
    clean, random, one, many = (loss_at(model, inputs, embeddings, d) for d in (0 * fgm, noise, fgm, pgd))
    assert one > clean and one > random and many >= one - 1e-4, (clean, random, one, many)


def test_adversarial_loss_trains_the_model_and_its_embeddings():
    model, inputs = tiny_bert(), padded()
    adversarial_loss(model, inputs, epsilon=0.5).backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    assert model.classifier.weight.grad.abs().sum() > 0


def test_clear_errors():
    with pytest.raises(ValueError, match="epsilon must be positive"):
        perturbation(tiny_bert(), padded(), epsilon=0.0)


def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward():
    from mtlib.adversarial import reverse_gradient

    x = torch.randn(3, 4, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    torch.testing.assert_close(y, x)
    (y * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.3 * torch.arange(4.0).expand(3, 4))


def test_reversal_weight_schedule():
    from mtlib.adversarial import reversal_weight

    assert reversal_weight(0.0) == 0.0 and 0.99 < reversal_weight(1.0) < 1.0
    assert reversal_weight(0.1) < reversal_weight(0.5) < reversal_weight(0.9)
    with pytest.raises(ValueError, match="between 0 and 1"):
        reversal_weight(1.5)
