"""mtlib.ewc: the diagonal Fisher one example at a time, the penalty and its online form (tiny random models)."""
import pytest
import torch

from mtlib.ewc import EWC, fisher_diagonal, uniform_like
from tiny_models import batch, one_thread, tiny_bert  # noqa: F401 (one_thread: a fixture)


def loader(n=8, seed=1):
    inputs = batch(seed=seed, n=4)
    more = batch(seed=seed + 1, n=4)
    both = {k: torch.cat([inputs[k], more[k]])[:n] for k in inputs}
    return [both]  # one batch of n examples: what a DataLoader yields


def per_example_grads(model, data, label_of):
    """Each example's gradient of log p(label_of(i, log_probs) | x), by separate forward passes."""
    out = []
    for i in range(len(data["labels"])):
        model.zero_grad()
        log_probs = torch.log_softmax(model(**{k: v[i:i + 1] for k, v in data.items() if k != "labels"}).logits[0], -1)
        log_probs[label_of(i, log_probs)].backward()
        out.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})
    return out


def test_empirical_fisher_is_the_mean_of_per_example_squared_gradients():
    model, data = tiny_bert(), loader()[0]
    fisher = fisher_diagonal(model, [data], "cpu")
    grads = per_example_grads(model, data, lambda i, _: int(data["labels"][i]))
    for name, f in fisher.items():
        expected = torch.stack([g[name] ** 2 for g in grads]).mean(0) if name in grads[0] else torch.zeros_like(f)
        torch.testing.assert_close(f, expected, rtol=1e-4, atol=1e-10)
    # the common bug, the square of the mean gradient, is smaller (Jensen), here by far
    squared_mean = sum((torch.stack([g[n] for g in grads]).mean(0) ** 2).sum() for n in grads[0])
    assert sum(f.sum() for f in fisher.values()) > 2 * squared_mean


def test_model_fisher_weights_each_class_by_its_probability():
    model, data = tiny_bert(), loader(n=3)[0]
    fisher = fisher_diagonal(model, [data], "cpu", labels="model")
    expected = {}
    for c in (0, 1):
        grads = per_example_grads(model, data, lambda i, _: c)
        for i, g in enumerate(grads):
            with torch.no_grad():
                p = torch.softmax(model(**{k: v[i:i + 1] for k, v in data.items() if k != "labels"}).logits[0], -1)[c]
            for name, value in g.items():
                expected[name] = expected.get(name, 0) + p * value ** 2 / 3
    for name, value in expected.items():
        torch.testing.assert_close(fisher[name], value, rtol=1e-4, atol=1e-10)


def test_fisher_in_eval_mode_and_mode_restored():
    model = tiny_bert()
    for module in model.modules():  # dropout that would change every forward pass in train mode
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
    model.train()
    first = fisher_diagonal(model, loader(), "cpu", max_examples=4)
    assert model.training
    second = fisher_diagonal(model, loader(), "cpu", max_examples=4)
    for name in first:  # no dropout: the same numbers twice
        torch.testing.assert_close(first[name], second[name])


def test_penalty_is_zero_at_the_anchor_and_pulls_back_as_lam_f():
    model = tiny_bert()
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters() if "classifier" not in n}
    ewc = EWC(model, fisher, lam=10.0)
    assert ewc.penalty(model).item() == 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    model.zero_grad()
    ewc.penalty(model).backward()
    for name, p in model.named_parameters():
        if name in fisher:
            torch.testing.assert_close(p.grad, 10.0 * fisher[name] * 0.01, rtol=1e-3, atol=1e-8)
        else:
            assert p.grad is None


def test_uniform_fisher_is_l2_towards_the_anchor_with_the_same_total_weight():
    model = tiny_bert()
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    uniform = uniform_like(fisher)
    level = sum(f.sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values())
    torch.testing.assert_close(sum(f.sum() for f in uniform.values()), sum(f.sum() for f in fisher.values()))
    ewc = EWC(model, uniform, lam=2.0)
    anchor = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    l2 = sum(((p - anchor[n]) ** 2).sum() for n, p in model.named_parameters())
    torch.testing.assert_close(ewc.penalty(model), level * l2)  # lam / 2 = 1


def test_online_consolidation_decays_the_old_fisher_and_moves_the_anchor():
    model = tiny_bert()
    old = {n: torch.full_like(p, 2.0) for n, p in model.named_parameters()}
    ewc = EWC(model, old, lam=1.0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    new = {n: torch.ones_like(p) for n, p in model.named_parameters()}
    ewc.consolidate(model, new, gamma=0.5)
    assert all(torch.equal(f, torch.full_like(f, 2.0)) for f in ewc.fisher.values())  # 0.5 * 2 + 1
    assert ewc.penalty(model).item() == 0.0  # centred on the latest weights


def test_clear_errors():
    model = tiny_bert()
    with pytest.raises(ValueError, match="'empirical'"):
        fisher_diagonal(model, loader(), "cpu", labels="true")
    with pytest.raises(ValueError, match="lacks"):
        EWC(model, {"encoder.no_such.weight": torch.zeros(1)}, lam=1.0)
    with pytest.raises(ValueError, match="no example"):
        fisher_diagonal(model, [], "cpu")
