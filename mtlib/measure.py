"""Time and peak memory of a piece of work, for the comparison tables (chapter 05; every Part II chapter).

    with measure.usage(cfg.device) as used:
        train.fit(model, loader, epochs=2)
    print(used.seconds, used.peak_mib)

On a GPU the peak is what PyTorch's allocator held at most during the block, above what it held at the start
(`torch.cuda.max_memory_allocated`). On a CPU PyTorch keeps no such count, so a background thread samples the bytes
the process has allocated every 50 milliseconds and reports the highest value above the starting one: the C
library's own count (`mallinfo2`, on Linux with glibc), else the resident memory (RSS), which misses memory that the
process freed earlier and reuses. Both measure what the block *added*: gradients, optimiser state and activations,
not the weights already loaded.
"""
from __future__ import annotations

import ctypes
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import torch


@dataclass
class Usage:
    """What `usage` measured: wall-clock seconds and the peak memory added, in MiB."""

    seconds: float = 0.0
    peak_mib: float = 0.0


class _MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (glibc 2.33 and later)
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _allocated_bytes():
    """A function returning the bytes the process has allocated: glibc's count where it exists, else the RSS."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        libc.mallinfo2()
    except (OSError, AttributeError):
        process = psutil.Process()
        return lambda: process.memory_info().rss
    return lambda: (lambda info: info.uordblks + info.hblkhd)(libc.mallinfo2())


class _Sampler(threading.Thread):
    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.read, self.interval = _allocated_bytes(), interval
        self.start_bytes = self.peak = self.read()
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, self.read())
            self.done.wait(self.interval)

    def stop(self) -> float:
        self.done.set()
        self.join()
        self.peak = max(self.peak, self.read())
        return (self.peak - self.start_bytes) / 2**20


@contextmanager
def usage(device: torch.device | str = "cpu", interval: float = 0.05):
    """Measure the wall time and the peak memory added while the `with` block runs; yields a `Usage`.

    On a CPU the sampler reads the allocator's count every `interval` seconds. Reading it takes the allocator's locks:
    every 5 ms, it slowed a training step of the decoder from 1.06 s to 1.59 s (chapter 11); every 50 ms it costs
    nothing measurable, and a training step's peak lasts far longer than that.
    """
    device = torch.device(device)
    if interval <= 0:
        raise ValueError(f"interval must be a positive number of seconds, got {interval}.")
    used = Usage()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        sampler = _Sampler(interval)
        sampler.start()
    start = time.perf_counter()
    try:
        yield used
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            used.peak_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            used.peak_mib = sampler.stop()
        used.seconds = time.perf_counter() - start
