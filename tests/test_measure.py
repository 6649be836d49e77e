"""mtlib.measure: wall time and the peak memory a block adds."""
import time

import numpy as np
import pytest
import torch

from mtlib import measure


def test_usage_sees_a_temporary_allocation():
    with measure.usage("cpu") as used:
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched, then freed before the block ends
        time.sleep(0.05)
        del block
    assert 150 < used.peak_mib < 400, used.peak_mib
    assert used.seconds >= 0.05


def test_usage_of_nothing_is_small():
    with measure.usage("cpu") as used:
        time.sleep(0.02)
    assert used.peak_mib < 20 and 0.02 <= used.seconds < 1


def test_usage_grows_with_the_work():
    sizes = []
    for mib in (50, 300):
        with measure.usage(torch.device("cpu")) as used:
            x = torch.ones(mib * 2**20 // 4)
            x += 1
        del x
        sizes.append(used.peak_mib)
    assert sizes[1] > sizes[0] + 150, sizes


def test_usage_bad_interval():
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        with measure.usage("cpu", interval=0):
            pass


def test_usage_counts_memory_the_process_reuses():
    # a first block allocates and frees 100 MiB; the second allocates it again: the RSS would not grow the second
    # time (the memory is reused), the allocator's count does
    for _ in range(2):
        with measure.usage("cpu", interval=0.005) as used:  # a block of a few ms: sample finer than the default
            x = torch.ones(100 * 2**20 // 4)
            x += 1
            del x
        assert 80 < used.peak_mib < 200, used.peak_mib
