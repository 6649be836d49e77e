"""Adapters (chapter 08): a small trainable bottleneck network inside every block of a frozen model.

An adapter maps a sublayer's output h to h + up(act(down(h))): down to `bottleneck` numbers, a nonlinearity, and up
again, with `up` starting at zero so that the model at step 0 computes exactly what it did before. As in Houlsby et al.
(2019) it acts on the sublayer's output before the residual add and the LayerNorm: the layer that produces that output
(BERT's `attention.output.dense`) is wrapped, so that wrapped(x) = adapter(layer(x)). The "houlsby" placement puts an
adapter after the attention and after the feed-forward sublayer of every block, "pfeiffer" after the feed-forward
sublayer only; each adapter adds 2 x hidden x bottleneck + bottleneck + hidden numbers. Houlsby et al. also trained the
layer norms: `train_layer_norms=True` trains every norm layer of the model too (not counted as added parameters: they
were there already).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D

from ..zoo import transformer_layers
from .common import TuningError, check_fresh, mark_applied, replace, train_only

# model_type: the layers, named inside a block, whose outputs get an adapter (attention output, feed-forward output)
SUBLAYER_OUTPUTS = {
    "bert": ("attention.output.dense", "output.dense"),
    "distilbert": ("attention.out_lin", "ffn.lin2"),
    "gpt2": ("attn.c_proj", "mlp.c_proj"),
    "llama": ("self_attn.o_proj", "mlp.down_proj"),
}
PLACEMENTS = ("houlsby", "pfeiffer")
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


@dataclass
class AdapterConfig:
    bottleneck: int = 64  # the adapter's inner size
    placement: str = "houlsby"  # "houlsby": after attention and feed-forward; "pfeiffer": after feed-forward only
    activation: str = "gelu"  # one of ACTIVATIONS
    train_layer_norms: bool = False  # Houlsby et al. trained them as well
    attention_output: str | None = None  # for a model type not in SUBLAYER_OUTPUTS: a block's attention output layer
    ffn_output: str | None = None  # ... and its feed-forward output layer, e.g. "mlp.down_proj"


class Adapter(nn.Module):
    """h -> h + up(act(down(h))); `up` starts at zero, so the adapter starts as the identity."""

    def __init__(self, hidden: int, bottleneck: int, activation: str = "gelu"):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))


class WithAdapter(nn.Module):
    """A frozen output layer (`nn.Linear` or GPT-2's `Conv1D`) followed by an adapter."""

    def __init__(self, base: nn.Module, bottleneck: int, activation: str = "gelu"):
        super().__init__()
        self.base = base
        hidden = base.nf if isinstance(base, Conv1D) else base.out_features
        self.adapter = Adapter(hidden, bottleneck, activation).to(base.weight.device, base.weight.dtype)

    def forward(self, x):
        return self.adapter(self.base(x))


def sublayer_outputs(model: nn.Module, config: AdapterConfig) -> list[str]:
    """The names, inside a block, of the layers whose outputs get an adapter under `config.placement`."""
    model_type = getattr(model.config, "model_type", None)
    attention, ffn = SUBLAYER_OUTPUTS.get(model_type, (None, None))
    names = [config.ffn_output or ffn] if config.placement == "pfeiffer" else \
        [config.attention_output or attention, config.ffn_output or ffn]
    if None in names:
        raise TuningError(f"Adapters know where to go in {', '.join(SUBLAYER_OUTPUTS)} models, not in model type "
                          f"{model_type!r}: name the output layers inside a block, e.g. AdapterConfig("
                          "attention_output='self_attn.o_proj', ffn_output='mlp.down_proj').")
    return names


def apply(model: nn.Module, config: AdapterConfig = AdapterConfig()) -> dict:
    """Insert the adapters in place; only they (and the LayerNorms if asked) and the task head stay trainable."""
    if not isinstance(config.bottleneck, int) or config.bottleneck < 1:
        raise TuningError(f"An adapter's bottleneck must be a whole number of at least 1, got {config.bottleneck!r}.")
    if config.placement not in PLACEMENTS:
        raise TuningError(f"Unknown adapter placement {config.placement!r}: choose 'houlsby' (after attention and "
                          "feed-forward) or 'pfeiffer' (after feed-forward only).")
    if config.activation not in ACTIVATIONS:
        raise TuningError(f"Unknown activation {config.activation!r}: choose one of {', '.join(ACTIVATIONS)}.")
    check_fresh(model, "adapters")
    inner = sublayer_outputs(model, config)
    blocks = transformer_layers(model)
    stack = next(name for name, module in model.named_modules() if module is blocks)
    layers = [f"{stack}.{i}.{name}" for i in range(len(blocks)) for name in inner]
    modules = dict(model.named_modules())
    wrong = [name for name in layers if not isinstance(modules.get(name), (nn.Linear, Conv1D))]
    if wrong:  # checked before any change, so that the model is left as it was
        what = "missing" if modules.get(wrong[0]) is None else f"a {type(modules[wrong[0]]).__name__}"
        linear = [n for n, m in blocks[0].named_modules() if isinstance(m, (nn.Linear, Conv1D))]
        raise TuningError(f"{wrong[0]} is {what}, not a linear layer that an adapter can follow. The linear layers "
                          f"inside a block are: {', '.join(linear)}.")
    for name in layers:
        replace(model, name, WithAdapter(modules[name], config.bottleneck, config.activation))
    norms = [name for name, m in model.named_modules() if "norm" in type(m).__name__.lower()]
    train_only(model, *(f"{name}.adapter" for name in layers), *(norms if config.train_layer_norms else []))
    mark_applied(model, "adapters")
    added = sum(p.numel() for name in layers for p in model.get_submodule(name).adapter.parameters())
    return {"technique": "adapters", "placement": config.placement, "layers": layers, "added parameters": added}

