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
