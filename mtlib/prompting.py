"""Discrete prompts (chapter 10): a frozen causal language model as a classifier, by the likelihood of label words.

A template turns a text into a prompt ("Review: {text}\\nSentiment:"); each class has a label word (" negative",
" positive"); the model's next-token logits of those words, read at the prompt's last position, are the class logits.
Nothing is trained. Demonstrations (few-shot) are a prefix shared by every prompt: their keys and values are computed
once and reused, which gives the same logits as reading them again for every text. A soft prompt (`tuning.prompt`)
can be put in front of the language model, and then only it trains.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache
from transformers.modeling_outputs import SequenceClassifierOutput


class PromptingError(ValueError):
    """Label words or inputs that label-word classification cannot use."""


def label_word_ids(tokenizer, words) -> list[int]:
    """The token id of every label word; each must be a single token of this tokenizer (mind the leading space)."""
    ids = []
    for word in words:
        tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(tokens) != 1:
            pieces = [tokenizer.decode([t]) for t in tokens]
            raise PromptingError(f"The label word {word!r} is {len(tokens)} tokens for this tokenizer ({pieces}): "
                                 "choose a word that is one token, usually with a leading space (' good').")
        ids.append(tokens[0])
    if len(set(ids)) != len(ids):
        raise PromptingError(f"The label words {list(words)!r} share a token: each class needs its own word.")
    return ids


class LabelWordClassifier(nn.Module):
    """A causal language model whose class logits are its next-token logits of the label words at the last position.

    Inputs must be padded on the left, so that the last position is every prompt's last token; positions are counted
    from each prompt's first real token (a soft prompt's hook replaces them, as peft's does, by positions that run over
    prompt, padding and text together). `demonstrations` (token ids) are read once and kept as keys and values in front
    of every prompt.
    """

    def __init__(self, lm: nn.Module, word_ids: list[int], demonstrations: list[int] | None = None):
        super().__init__()
        self.lm, self.word_ids = lm, list(word_ids)
        self.config = lm.config
        self.config.num_labels = len(self.word_ids)  # fit and evaluate read it
        self.demonstrations = None
        if demonstrations:
            with torch.no_grad():
                ids = torch.tensor([list(demonstrations)], device=lm.device)
                cache = lm.base_model(input_ids=ids, use_cache=True).past_key_values
            self.demonstrations = [(layer.keys, layer.values) for layer in cache.layers]

    def forward(self, input_ids, attention_mask, labels=None, **inputs):
        if bool((attention_mask[:, -1] == 0).any()):
            raise PromptingError("The batch is padded on the right, so the last position is a pad token for some "
                                 "prompts: set tokenizer.padding_side = 'left'.")
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        if self.demonstrations is not None:  # the demonstrations' keys and values, repeated over the batch
            n, done = input_ids.shape[0], self.demonstrations[0][0].shape[2]
            inputs["past_key_values"] = DynamicCache([(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1))
                                                      for k, v in self.demonstrations])
            attention_mask = torch.cat([attention_mask.new_ones(n, done), attention_mask], dim=1)
            positions = positions + done
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         logits_to_keep=1, **inputs).logits[:, -1, self.word_ids]
        loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def calibrated(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): the label words' probabilities divided by those the same prompt gives
    a content-free text ("N/A"), renormalised. probs: (n, classes); content_free: (classes,) or (m, classes),
    averaged."""
    reference = content_free.reshape(-1, probs.shape[1]).mean(0)
    scaled = probs / reference
    return scaled / scaled.sum(1, keepdim=True)
