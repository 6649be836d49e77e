"""Profiles, seeding, device, threads and model choices: what `mtlib.setup()` decides (Preface, chapter 00).

One notebook runs under three budgets. `full` uses the hub models on a GPU (Colab); `local` uses the offline
checkpoints and the data mirror on a CPU; `smoke` is `local` cut down to small slices for CI. The rehearsal
(`MTLIB_REHEARSAL=1`, `make rehearse`) runs the `full` profile's architectures, built tiny with random weights, at
`smoke` sizes: CI's stand-in for a Colab reader.
"""
from __future__ import annotations

import os
import random
import socket
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("full", "local", "smoke")
ROLES = ("encoder", "student", "decoder")
HUB_URL = "https://huggingface.co"
SAME_AS_LOCAL = object()  # `cfg.pick`'s default for `full`, told apart from an explicit None


class ProfileError(ValueError):
    """An unknown profile name, role or model override."""


@dataclass
class Config:
    """What `setup()` chose. Chapters read `cfg.profile` and `cfg.device`, and size their runs with `cfg.pick`."""

    profile: str
    device: torch.device
    seed: int = 0
    threads: int = field(default_factory=torch.get_num_threads)
    models: dict = field(default_factory=dict)  # role -> hub id or local folder, chosen by the reader
    rehearsal: bool = False  # tiny random `full` models at `smoke` sizes: claims that need pretraining are skipped

    def pick(self, *, smoke, local, full=SAME_AS_LOCAL):
        """The value for the current profile: `cfg.pick(smoke=64, local=1000, full=5000)`.

        Leaving out `full` means "as `local`", so a chapter only says what differs; `full=None` is the value None
        (for `data.sample`: the whole split). The rehearsal takes the `smoke` value.
        """
        if self.rehearsal:
            return smoke
        return {"smoke": smoke, "local": local, "full": local if full is SAME_AS_LOCAL else full}[self.profile]

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


def flag(name: str) -> bool:
    """An environment variable read as a switch: unset, "", "0", "false" and "no" are off."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub answers (`HF_ENDPOINT`, e.g. a mirror, else huggingface.co) and HF_HUB_OFFLINE is not set."""
    if flag("HF_HUB_OFFLINE"):
        return False
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or HUB_URL)
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
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


def check_models(models: dict) -> dict:
    """Validate role -> model overrides: known roles, and a local folder must hold a model (its config.json)."""
    checked = {}
    for role, source in models.items():
        if role not in ROLES:
            raise ProfileError(f"Unknown role {role!r} in the model overrides. The roles are {', '.join(ROLES)}, "
                               "e.g. setup(models={'encoder': 'bert-base-chinese'}).")
        source = str(source).strip()
        folder = Path(source).expanduser()
        looks_local = folder.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1
        if looks_local and not (folder / "config.json").is_file():
            raise ProfileError(
                f"The {role!r} override {source!r} is not a model folder: it has no config.json. Point it at the "
                "folder that save_pretrained wrote (config.json, weights, tokenizer files), or at a hub id.")
        checked[role] = str(folder) if looks_local else source
    return checked


def models_from_env() -> dict:
    """`MTLIB_MODELS="encoder=bert-base-chinese,decoder=/models/qwen"` as a dict."""
    text = os.environ.get("MTLIB_MODELS", "").strip()
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ProfileError(f"MTLIB_MODELS={text!r} is not a list of role=model pairs, "
                           "e.g. MTLIB_MODELS=encoder=bert-base-chinese,decoder=/path/to/folder")
    return {role.strip(): source.strip() for role, source in pairs}


def setup(profile: str | None = None, seed: int = 0, threads: int | None = None, verbose: bool = True,
          models: dict | None = None) -> Config:
    """Choose the profile, seed everything, pick the device, print one line. Returns a `Config`.

    The profile comes from the argument, else `MTLIB_PROFILE`, else automatically (`full` with a GPU and the hub,
    `local` otherwise). `models` points roles at other checkpoints, a hub id or a local folder
    (`{"encoder": "bert-base-chinese"}`), over those of `MTLIB_MODELS`. `MTLIB_REHEARSAL=1` runs the rehearsal.
    """
    device = pick_device()
    rehearsal = flag("MTLIB_REHEARSAL")
    name = "full" if rehearsal else profile or os.environ.get("MTLIB_PROFILE") or auto_profile(device)
    name = check_profile(name)
    chosen = check_models({**models_from_env(), **(models or {})})
    if threads:
        torch.set_num_threads(threads)
    seed_everything(seed)
    quiet_libraries()
    cfg = Config(profile=name, device=device, seed=seed, models=chosen, rehearsal=rehearsal)
    if verbose:
        print(f"mtlib {name} profile | device {device.type} | seed {seed} | torch {torch.__version__} "
              f"| {cfg.threads} CPU threads")
        for role, source in chosen.items():
            print(f"  {role}: {source} (chosen in this run)")
        if rehearsal:
            print("  rehearsal: the full profile's architectures, tiny and with random weights, at smoke sizes; "
                  "checks that need pretrained weights are skipped")
    return cfg
