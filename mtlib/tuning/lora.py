"""LoRA (chapter 09): a frozen linear layer plus a trainable low-rank update, h = W x + (alpha / r) B A x.

A (r x in) starts random and B (out x r) at zero, so at step 0 the model computes exactly what it did before; only
A, B and the task head train, r (in + out) numbers per wrapped layer instead of in x out. `merge` folds the update
into W for inference at no extra cost, `unmerge` takes it out again. It wraps `nn.Linear` and GPT-2's `Conv1D`
(whose weight is stored transposed, in x out), so it works on BERT, DistilBERT, GPT-2 and Llama alike. The
initialisation and the scaling follow peft's `LoraConfig`, which chapter 09 checks it against.

DoRA (`LoraConfig(use_dora=True)`, also chapter 09) splits every output row of W + (alpha / r) B A into a length and a
direction: h = m / ||W + (alpha / r) B A|| * (W + (alpha / r) B A) x + bias, with the row norms ||.|| treated as
constants (no gradient flows through them, as in the DoRA paper's section 4.3 and peft), and a trainable magnitude m,
one number per output feature, that starts at ||W||, so that DoRA too starts exactly where the model was.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from .common import TuningError, check_fresh, mark_applied, matching_modules, replace, train_only

WRAPS = (nn.Linear, Conv1D)


@dataclass
class LoraConfig:
    r: int = 8  # rank of the update
    alpha: float = 16.0  # the update is scaled by alpha / r
    dropout: float = 0.0  # on the input of the low-rank path only
    target_modules: tuple[str, ...] = ("query", "value")  # layer names, or their last part
    use_dora: bool = False  # DoRA: also train the length of every output row (`DoraLinear`)


class LoraLinear(nn.Module):
    """A frozen `nn.Linear` or `Conv1D` plus the trainable low-rank update (alpha / r) B A."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.transposed = isinstance(base, Conv1D)  # Conv1D stores its weight as (in, out)
        out_features, in_features = (base.weight.shape[::-1] if self.transposed else base.weight.shape)
        self.lora_A = nn.Parameter(torch.empty(r, in_features, dtype=base.weight.dtype, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r, dtype=base.weight.dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear and peft initialise A
        self.scaling = alpha / r
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, shaped like the base layer's weight."""
        delta = (self.lora_B @ self.lora_A) * self.scaling
        return delta.T if self.transposed else delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A: the same outputs from one matrix product."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: back to the frozen weight and a separate update."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


class DoraLinear(LoraLinear):
    """LoRA plus a trainable magnitude: each output row of W + (alpha / r) B A rescaled to length `lora_magnitude`."""

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0):
        super().__init__(base, r, alpha, dropout)
        self.lora_magnitude = nn.Parameter(self.weight_norm())  # B is zero, so this is ||W||: the output is unchanged

    def weight_norm(self) -> torch.Tensor:
        """||W + (alpha / r) B A|| of every output row, detached: a constant for backpropagation, as in peft."""
        weight = self.base.weight + self.delta_weight()
        return torch.linalg.norm(weight, dim=0 if self.transposed else 1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        # peft's formula: out + (s - 1) W x + s (alpha / r) B A x = s (W + (alpha / r) B A) x + bias, s = m / norm;
        # with dropout, x is dropped out for both extra terms (as peft does).
        x = self.dropout(x)
        s = self.lora_magnitude / self.weight_norm()
        base_out = x @ (self.base.weight if self.transposed else self.base.weight.T)  # W x, without the bias
        return out + (s - 1) * base_out + s * (x @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def row_scale(self, norm: torch.Tensor) -> torch.Tensor:
        """m / norm, shaped to multiply the base weight's output rows (its columns for Conv1D)."""
        s = self.lora_magnitude / norm
        return s if self.transposed else s[:, None]

    @torch.no_grad()
    def merge(self) -> None:
        """W <- m / norm * (W + (alpha / r) B A), the norm taken (and kept, to unmerge) before merging."""
        if not self.merged:
            self.merged_norm = self.weight_norm()
            self.base.weight.copy_(self.row_scale(self.merged_norm) * (self.base.weight + self.delta_weight()))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W / (m / norm) - (alpha / r) B A, with the norm kept from merging."""
        if self.merged:
            self.base.weight.copy_(self.base.weight / self.row_scale(self.merged_norm) - self.delta_weight())
            self.merged = False


def apply(model: nn.Module, config: LoraConfig = LoraConfig()) -> dict:
    """Wrap every target layer of `model` in place; only the LoRA matrices (with DoRA, also the magnitudes) and the
    task head stay trainable."""
    if not isinstance(config.r, int) or config.r < 1:
        raise TuningError(f"LoRA's rank r must be a whole number of at least 1, got r={config.r!r}.")
    check_fresh(model, "lora")
    targets = matching_modules(model, config.target_modules, WRAPS)
    wrapper = DoraLinear if config.use_dora else LoraLinear
    for name, layer in targets.items():
        replace(model, name, wrapper(layer, config.r, config.alpha, config.dropout))
    own = ("lora_A", "lora_B", "lora_magnitude") if config.use_dora else ("lora_A", "lora_B")
    train_only(model, *(f"{name}.{p}" for name in targets for p in own))
    mark_applied(model, "lora")
    added = sum(p.numel() for m in model.modules() if isinstance(m, LoraLinear) for p in m.parameters(recurse=False))
    return {"technique": "dora" if config.use_dora else "lora", "layers": sorted(targets), "added parameters": added}


def merge(model: nn.Module) -> None:
    """Fold every LoRA update into its base weight (for inference)."""
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.merge()


def unmerge(model: nn.Module) -> None:
    """Take every merged LoRA update out of its base weight again."""
    for module in model.modules():
        if isinstance(module, LoraLinear):
            module.unmerge()
