"""mtlib.continual: ACC, BWT and FWT on matrices whose answers are known."""
import numpy as np
import pytest

from mtlib.continual import average_accuracy, backward_transfer, forward_transfer

# task 0 learned to 0.9 then forgotten to 0.6; task 1 learned to 0.8 and kept; task 2 learned to 0.7
R = np.array([[0.9, 0.5, 0.4],
              [0.7, 0.8, 0.45],
              [0.6, 0.8, 0.7]])


def test_average_accuracy_reads_the_last_row():
    assert average_accuracy(R) == pytest.approx((0.6 + 0.8 + 0.7) / 3)


def test_backward_transfer_is_negative_when_the_model_forgets():
    assert backward_transfer(R) == pytest.approx(((0.6 - 0.9) + (0.8 - 0.8)) / 2)
    kept = R.copy()
    kept[-1, :-1] = np.diag(R)[:-1]  # every earlier task ends where it was learned
    assert backward_transfer(kept) == pytest.approx(0.0)


def test_forward_transfer_against_a_stated_baseline():
    assert forward_transfer(R, [0.5, 0.5, 0.5]) == pytest.approx(((0.5 - 0.5) + (0.45 - 0.5)) / 2)
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R, [0.5, 0.5])


def test_clear_error_on_a_matrix_of_the_wrong_shape():
    with pytest.raises(ValueError, match="square matrix"):
        average_accuracy(np.ones((2, 3)))


def test_replay_buffer_keeps_a_uniform_sample_of_everything_seen():
    from mtlib.continual import ReplayBuffer

    counts = np.zeros(100)
    for seed in range(2000):
        buffer = ReplayBuffer(10, seed=seed)
        for example in range(100):  # task 0 is 0..49, task 1 is 50..99: the old task must not be crowded out
            buffer.add(example)
        assert len(buffer) == 10 and len(set(buffer.items)) == 10
        counts[buffer.items] += 1
    share = counts / 2000  # each example kept with probability 10 / 100
    assert abs(share[:50].mean() - 0.1) < 0.005 and abs(share[50:].mean() - 0.1) < 0.005
    assert share.min() > 0.07 and share.max() < 0.13


def test_replay_buffer_sampling_and_errors():
    from mtlib.continual import ReplayBuffer

    buffer = ReplayBuffer(5, seed=0)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(2)
    for example in "abc":
        buffer.add(example)
    assert sorted(buffer.sample(8)) == ["a", "b", "c"] and len(buffer.sample(2)) == 2
    assert len(set(buffer.sample(3))) == 3
    with pytest.raises(ValueError, match="at least one example"):
        ReplayBuffer(0)
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(0)
