"""Last-token pooling for decoders (chapter 05): read a sequence's prediction at its last real token.

In a causal decoder, position t attends to positions 0..t only, so the last real token is the one position whose
hidden state has seen the whole text. Where that token sits depends on the padding:

    right padding   [a b c <pad> <pad>]   mask [1 1 1 0 0]   last real token at 2, not at -1
    left padding    [<pad> <pad> a b c]   mask [0 0 1 1 1]   last real token at 4 (= -1)

`last_token_index` reads it from the attention mask (never from the token ids: a decoder pads with its
end-of-text token, which may also occur inside a text), so it is right for both sides.
"""
from __future__ import annotations

import torch


class PoolingError(ValueError):
    """An attention mask or a tensor that cannot be pooled."""


def check_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """The attention mask as a 2-D boolean tensor (True = real token); PoolingError for any other shape or values."""
    if not isinstance(attention_mask, torch.Tensor):
        attention_mask = torch.as_tensor(attention_mask)
    if attention_mask.dim() != 2:
        raise PoolingError(f"The attention mask must be 2-D (batch, length), got shape {tuple(attention_mask.shape)}.")
    if attention_mask.dtype != torch.bool:
        if attention_mask.is_floating_point() or attention_mask.is_complex():
            values = attention_mask
        else:
            values = attention_mask.long()
        if not ((values == 0) | (values == 1)).all():
            raise PoolingError("The attention mask must hold 0 (padding) and 1 (real token) only, "
                               f"got values {torch.unique(values).tolist()[:8]}.")
        attention_mask = values == 1
    return attention_mask


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """The position of the last real token of every row (mask == 1), for right, left or no padding.

    Returns a LongTensor of shape (batch,). A row without any real token is an error (PoolingError).
    """
    mask = check_mask(attention_mask)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    index = torch.where(mask, positions, torch.full_like(positions, -1)).amax(dim=1)
    empty = (index < 0).nonzero().flatten().tolist()
    if empty:
        raise PoolingError(f"Row(s) {empty[:10]} of the attention mask have no real token (all zeros): there is no "
                           "last token to read. Drop empty texts before batching.")
    return index


def gather_last(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`states[i, last_token_index(mask)[i]]` for every row i.

    states: (batch, length, ...) hidden states or per-position logits; returns (batch, ...).
    """
    mask = check_mask(attention_mask)
    if states.dim() < 2 or tuple(states.shape[:2]) != tuple(mask.shape):
        raise PoolingError(f"states of shape {tuple(states.shape)} do not match the attention mask of shape "
                           f"{tuple(mask.shape)}: expected (batch, length, ...) = {tuple(mask.shape)} + (...).")
    index = last_token_index(mask.to(states.device))
    return states[torch.arange(states.shape[0], device=states.device), index]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over the real tokens only (0, 1, 2, ... from each row's first real token; 0 on padding).

    With left padding, pass these to the model (`position_ids=`): a model with absolute position embeddings
    (GPT-2) would otherwise see its text at shifted positions and compute different hidden states.
    """
    mask = check_mask(attention_mask).long()
    return (mask.cumsum(dim=1) - 1).clamp(min=0)
