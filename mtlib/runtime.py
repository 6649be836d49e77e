"""Profiles, seeding, device and threads: what `mtlib.setup()` decides (Preface, chapter 00).

One notebook runs under three budgets. `full` uses the hub models on a GPU (Colab); `local` uses the offline
checkpoints and the data mirror on a CPU; `smoke` is `local` cut down to small slices for CI.
"""
from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, field

import numpy as np
import torch

PROFILES = ("full", "local", "smoke")
HUB_HOST = "huggingface.co"


class ProfileError(ValueError):
    """An unknown profile name."""


@dataclass
class Config:
    """What `setup()` chose. Chapters read `cfg.profile` and `cfg.device`, and size their runs with `cfg.pick`."""

    profile: str
    device: torch.device
    seed: int = 0
    threads: int = field(default_factory=torch.get_num_threads)

    def pick(self, *, smoke, local, full=None):
        """The value for the current profile: `cfg.pick(smoke=64, local=1000, full=5000)`.

        `full` defaults to `local`, so a chapter only says what differs.
        """
        return {"smoke": smoke, "local": local, "full": local if full is None else full}[self.profile]

    @property
    def offline(self) -> bool:
        """True for the profiles that use the offline checkpoints (`local`, `smoke`)."""
        return self.profile != "full"


def check_profile(name: str) -> str:
    name = name.strip().lower()
    if name not in PROFILES:
        raise ProfileError(
            f"Unknown profile {name!r}. Choose one of {', '.join(PROFILES)}: "
            "set MTLIB_PROFILE=local (or pass setup(profile='local')), or unset MTLIB_PROFILE to choose automatically."
        )
    return name


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers on its HTTPS port (and HF_HUB_OFFLINE is not set)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def pick_device() -> torch.device:
    """cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def auto_profile(device: torch.device) -> str:
    """`full` when a GPU and the hub are both there, else `local`."""
    return "full" if device.type in ("cuda", "mps") and hub_reachable() else "local"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def quiet_libraries() -> None:
    """Keep stored outputs readable: no weight-loading reports or progress bars from transformers and datasets."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def setup(profile: str | None = None, seed: int = 0, threads: int | None = None, verbose: bool = True) -> Config:
    """Choose the profile, seed everything, pick the device, print one line. Returns a `Config`.

    The profile comes from the argument, else `MTLIB_PROFILE`, else automatically (`full` with a GPU and the hub,
    `local` otherwise).
    """
    device = pick_device()
    name = profile or os.environ.get("MTLIB_PROFILE") or auto_profile(device)
    name = check_profile(name)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    quiet_libraries()
    cfg = Config(profile=name, device=device, seed=seed)
    if verbose:
        print(f"mtlib {name} profile | device {device.type} | seed {seed} | torch {torch.__version__} "
              f"| {cfg.threads} CPU threads")
    return cfg
