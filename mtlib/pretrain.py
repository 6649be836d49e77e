"""Masked-LM further pretraining on unlabelled text (chapter 04): blocks, loaders, a held-out loss on fixed masks.

Domain-adaptive pretraining continues the encoder's own objective on text of the new domain
(`mtlib.data.load_dataset("medical_text")`: a `DatasetDict` with a `text` column). The pieces:

- `build_blocks(ds, tokenizer, block_size)`: every text tokenised, joined and cut into full blocks of `block_size`
  tokens (`mode="blocks"`, as BERT was pretrained), or one truncated example per text (`mode="truncate"`);
- `collator(tokenizer)`: transformers' `DataCollatorForLanguageModeling` (15% of the tokens become targets: 80% of
  them `[MASK]`, 10% a random token, 10% unchanged);
- `make_loader(blocks, tokenizer)` / `make_loaders(...)`: DataLoaders for `mtlib.train.fit`, whose loop calls
  `model(**batch)` and uses `out.loss` (its label-range check only looks at 1-D class labels, so the 2-D masked-LM
  labels pass; give fit no validation loader, its validation pass is a classifier's);
- `MaskedOnly(model)`: the same loss with the head applied at the masked positions only (about half the work);
- `masked_losses(model, batches)`: the summed cross-entropy and the number of masked tokens of each held-out block,
  on masks drawn once from a fixed seed (`fixed_masks`), so that two models are scored on the very same masks and
  can be compared block by block; `mlm_loss(model, blocks, tokenizer)`: their mean per masked token;
- `masked_lm_perplexity(loss)` = exp(loss) (not Salazar et al.'s pseudo-perplexity, which masks every token in turn);
- `copy_encoder(source, target)`: a further-pretrained encoder into a classifier, keeping the target's pooler.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from torch import nn
from transformers import DataCollatorForLanguageModeling
from transformers.modeling_outputs import MaskedLMOutput

MLM_PROBABILITY = 0.15


class PretrainError(ValueError):
    """A corpus, block size, tokenizer or model that masked-LM pretraining cannot use."""


# ---------------------------------------------------------------------------------------------------- checks
def check_tokenizer(tokenizer) -> None:
    """Masked-LM needs a mask token (BERT's `[MASK]`); GPT-style tokenizers have none."""
    if getattr(tokenizer, "mask_token_id", None) is None:
        raise PretrainError(f"The tokenizer {type(tokenizer).__name__} has no mask token, so it cannot be used for "
                            "masked-LM pretraining. Use an encoder's tokenizer (mtlib.zoo.load('encoder', ...)).")


def check_mlm_head(model) -> None:
    """Raise a clear error unless `model` predicts a token at every position (a masked-LM head)."""
    name = type(model).__name__
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise PretrainError(
            f"{name} has no language-model head: it cannot predict masked tokens. Load the encoder with its masked-LM "
            "head: mtlib.zoo.load('encoder', cfg, head='masked-lm') (AutoModelForMaskedLM).")
    if "CausalLM" in name or getattr(model.config, "is_decoder", False):
        raise PretrainError(f"{name} is a causal (left-to-right) language model, which cannot see the tokens after "
                            "a mask. Masked-LM pretraining needs an encoder: mtlib.zoo.load('encoder', cfg, "
                            "head='masked-lm').")


def _texts(ds) -> dict[str, list[str]]:
    """The non-empty texts of each split of a DatasetDict (or of a single Dataset, as split 'train')."""
    if isinstance(ds, Dataset):
        ds = DatasetDict({"train": ds})
    if not isinstance(ds, DatasetDict) or len(ds) == 0:
        raise PretrainError("Give a datasets.DatasetDict (or Dataset) with a 'text' column, e.g. "
                            "mtlib.data.load_dataset('medical_text').")
    out = {}
    for split, part in ds.items():
        if "text" not in part.column_names:
            raise PretrainError(f"The {split!r} split has no 'text' column (columns: {part.column_names}).")
        texts = [t for t in part["text"] if isinstance(t, str) and t.strip()]
        if not texts:
            raise PretrainError(f"The {split!r} split holds no text: the corpus is empty. Load a corpus such as "
                                "mtlib.data.load_dataset('medical_text').")
        out[split] = texts
    return out


def _special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after one text (BERT: [CLS] / [SEP]; GPT-2: none)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start:start + len(bare)] == bare:
            return full[:start], full[start + len(bare):]
    return [], []


# ---------------------------------------------------------------------------------------------------- blocks
def build_blocks(ds, tokenizer, block_size: int = 128, mode: str = "blocks",
                 max_blocks: int | None = None) -> DatasetDict:
    """Token blocks for masked-LM training: a `Dataset` (columns input_ids, attention_mask, special_tokens_mask)
    for a `Dataset` of texts, or one per split for a `DatasetDict`.

    mode="blocks": the texts of a split are tokenised, joined (a separator token between two texts) and cut into
    blocks of exactly `block_size` tokens, each framed by the tokenizer's special tokens ([CLS] ... [SEP]); the
    incomplete last block is dropped. No token is wasted on padding and no text is cut short.
    mode="truncate": one example per text, cut at `block_size` tokens (the rest of a long text is lost).
    max_blocks: stop once a split has that many blocks (texts are read in order: shuffle the corpus first).
    """
    if max_blocks is not None and max_blocks < 1:
        raise PretrainError(f"max_blocks must be at least 1 (or None for all), got {max_blocks}.")
    if mode not in ("blocks", "truncate"):
        raise PretrainError(f"mode must be 'blocks' or 'truncate', got {mode!r}.")
    check_tokenizer(tokenizer)
    if not isinstance(block_size, int):
        raise PretrainError(f"block_size must be a whole number of tokens, got {block_size!r}.")
    prefix, suffix = _special_frame(tokenizer)
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else None
    room = block_size - len(prefix) - len(suffix)
    if room < 1:
        raise PretrainError(f"block_size={block_size!r} is too small: each block holds {len(prefix) + len(suffix)} "
                            "special tokens and needs room for text. Use e.g. block_size=128.")
    if limit is not None and block_size > limit:
        raise PretrainError(f"block_size={block_size} is longer than the model's maximum of {limit} tokens.")
    texts = _texts(ds)
    out = DatasetDict()
    for split, rows in texts.items():
        if mode == "truncate":
            rows = rows[:max_blocks]
            blocks = [list(x) for x in tokenizer(rows, truncation=True, max_length=block_size)["input_ids"]]
        else:
            sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            texts_ids, tokens = [], 0
            for i in range(0, len(rows), 256):  # tokenise in chunks, so that max_blocks stops early
                chunk = tokenizer(rows[i:i + 256], add_special_tokens=False)["input_ids"]
                texts_ids += chunk
                tokens += sum(len(ids) + (sep is not None) for ids in chunk)
                if max_blocks is not None and tokens >= max_blocks * room:
                    break
            blocks = pack_blocks(texts_ids, prefix, suffix, sep, block_size, max_blocks)
            if not blocks:
                raise PretrainError(f"The {split!r} split has only {tokens} tokens, fewer than one block of "
                                    f"{room} text tokens: use a smaller block_size or mode='truncate'.")
        special = set(tokenizer.all_special_ids)
        out[split] = Dataset.from_dict({
            "input_ids": blocks,
            "attention_mask": [[1] * len(b) for b in blocks],
            "special_tokens_mask": [[int(t in special) for t in b] for b in blocks],
        })
    return out["train"] if isinstance(ds, Dataset) else out


def pack_blocks(texts_ids, prefix, suffix, sep, block_size: int, max_blocks: int | None = None) -> list[list[int]]:
    """Join tokenised texts into one stream (`sep` after each) and cut it into blocks of exactly `block_size` tokens,
    each framed by `prefix` ... `suffix` ([CLS] ... [SEP] for BERT); the incomplete last block is dropped.
    """
    room = block_size - len(prefix) - len(suffix)  # text tokens per block
    stream = [token for ids in texts_ids for token in ids + ([sep] if sep is not None else [])]
    n = len(stream) // room if max_blocks is None else min(max_blocks, len(stream) // room)
    return [prefix + stream[i * room:(i + 1) * room] + suffix for i in range(n)]


def collator(tokenizer, mlm_probability: float = MLM_PROBABILITY, seed: int | None = None):
    """transformers' masked-LM collator: pads a batch and picks `mlm_probability` of its (non-special) tokens as
    targets (labels; -100 elsewhere), replacing 80% of them by [MASK], 10% by a random token, 10% unchanged.

    seed=None draws from torch's global generator (training); an int gives a private generator (fixed masks).
    """
    check_tokenizer(tokenizer)
    return DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed)


def make_loader(blocks: Dataset, tokenizer, batch_size: int = 16, shuffle: bool = True, seed: int = 0,
                mlm_probability: float = MLM_PROBABILITY):
    """A DataLoader over one `Dataset` of blocks with the masking collator (fresh masks every epoch), shuffled by
    `seed`. For `mtlib.train.fit(model, loader, None, ...)`: fit's validation pass is a classifier's, so score
    masked-LM models with `mlm_loss` instead.
    """
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise PretrainError(f"batch_size must be at least 1, got {batch_size}.")
    if len(blocks) == 0:
        raise PretrainError("No blocks to train on: the corpus is empty.")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(blocks, batch_size=batch_size, shuffle=shuffle, collate_fn=collator(tokenizer, mlm_probability),
                      generator=generator)


def make_loaders(blocks: DatasetDict, tokenizer, batch_size: int = 16, seed: int = 0,
                 mlm_probability: float = MLM_PROBABILITY) -> dict:
    """One DataLoader per split of `build_blocks`' output (only the train split shuffled): see `make_loader`."""
    return {split: make_loader(part, tokenizer, batch_size, split == "train", seed, mlm_probability)
            for split, part in blocks.items()}


# ----------------------------------------------------------------------------------------- masked-only head
class MaskedOnly(nn.Module):
    """A masked-LM model that applies its head only at the masked positions: the same loss, less work.

    A masked-LM head maps every position to scores over the whole vocabulary (30,522 words for BERT), which costs
    about as much as the 6 transformer blocks of MiniLM, yet the loss only reads the ~15% of positions that were
    masked. The head acts on each position separately, so gathering the masked positions of the encoder's output
    before the head gives the same scores there. Wrap a model for training (`fit(MaskedOnly(model), ...)`); the
    wrapped model is the same object, trained in place.
    """

    def __init__(self, model):
        check_mlm_head(model)
        super().__init__()
        self.model = model
        self.config = model.config

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        if labels is None:
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        keep = labels != -100

        def gather(module, args, output):  # the encoder's last hidden states -> (1, masked tokens, hidden)
            hidden = output[0][keep].unsqueeze(0)
            if isinstance(output, tuple):
                return (hidden,) + tuple(output[1:])
            output["last_hidden_state"] = hidden
            return output

        handle = self.model.base_model.register_forward_hook(gather)
        try:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits[0]
        finally:
            handle.remove()
        loss = nn.functional.cross_entropy(logits.float(), labels[keep])
        return MaskedLMOutput(loss=loss, logits=logits)


def copy_encoder(source, target) -> list[str]:
    """Copy the encoder weights (`base_model`) of `source`, e.g. a further-pretrained masked-LM model, into
    `target`, e.g. a freshly loaded classifier of the same architecture. Returns the names of the target's encoder
    weights that the source lacks and that keep their loaded values (BERT's masked-LM model has no pooler).

    Saving the masked-LM model and loading it as a classifier would instead give the classifier a new, random pooler
    and so compare the two starting points unfairly.
    """
    src, dst = source.base_model.state_dict(), target.base_model.state_dict()
    shared = [k for k in dst if k in src]
    if not shared:
        raise PretrainError(f"{type(source).__name__} and {type(target).__name__} share no encoder weights: "
                            "copy between models of the same architecture.")
    wrong = [k for k in shared if src[k].shape != dst[k].shape]
    if wrong:
        raise PretrainError(f"Encoder weights differ in shape, e.g. {wrong[0]}: {tuple(src[wrong[0]].shape)} vs "
                            f"{tuple(dst[wrong[0]].shape)}. Copy between models of the same size.")
    target.base_model.load_state_dict({k: src[k] for k in shared}, strict=False)
    return [k for k in dst if k not in src]


# ---------------------------------------------------------------------------------------------- evaluation
def fixed_masks(blocks: Dataset, tokenizer, seed: int = 0, batch_size: int = 32,
                mlm_probability: float = MLM_PROBABILITY) -> list[dict]:
    """The batches of a held-out `Dataset` of blocks, masked once with a private generator seeded by `seed`.

    The same arguments always give the same masks (and the same random replacements), whatever happened before.
    """
    if not isinstance(blocks, Dataset) or len(blocks) == 0:
        raise PretrainError("Give a non-empty datasets.Dataset of blocks (one split of build_blocks' output).")
    mask = collator(tokenizer, mlm_probability, seed=seed)
    rows = [{k: blocks[i][k] for k in ("input_ids", "attention_mask", "special_tokens_mask")}
            for i in range(len(blocks))]
    # transformers 5.0 drew the random replacement tokens from torch's global generator despite `seed`: seed that
    # too, inside a fork, so that the masks are the same on every version and the caller's random state is untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [mask(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def masked_losses(model, batches) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out block: the summed cross-entropy (nats) of its masked tokens, and how many were masked.

    batches: from `fixed_masks`, so that every model is scored on the same masks. The head runs at the masked
    positions only (`MaskedOnly`); each masked token's loss is added to the block (row) it came from.
    """
    check_mlm_head(model)
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    sums, counts = [], []
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            masked = batch["labels"] != -100  # (blocks, tokens)
            logits = MaskedOnly(model)(**batch).logits  # (masked tokens, vocabulary), in row order
            nll = nn.functional.cross_entropy(logits.float(), batch["labels"][masked], reduction="none")
            rows = masked.nonzero()[:, 0]  # the block of each masked token
            sums.append(torch.zeros(len(masked), device=device).index_add_(0, rows, nll).cpu())
            counts.append(masked.sum(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(sums).double().numpy(), torch.cat(counts).numpy()


def mlm_loss(model, blocks, tokenizer=None, seed: int = 0, batch_size: int = 32) -> float:
    """The held-out masked-LM loss: mean cross-entropy (nats) over all masked tokens of `blocks`.

    blocks: a `Dataset` from `build_blocks` (masked here with `seed`, so every call uses the same masks; needs the
    tokenizer) or a list of batches from `fixed_masks`. Each masked token weighs the same, whatever its block.
    """
    batches = blocks if isinstance(blocks, list) else fixed_masks(blocks, tokenizer, seed, batch_size)
    sums, counts = masked_losses(model, batches)
    if counts.sum() == 0:
        raise PretrainError("No token was masked in the held-out set: it is too small for a masked-LM loss.")
    return float(sums.sum() / counts.sum())


def masked_lm_perplexity(loss: float) -> float:
    """exp(masked-LM loss): the effective number of vocabulary entries the model hesitates between at a mask.

    Not the pseudo-perplexity of Salazar et al. (2020), which masks every token of a text in turn.
    """
    return float(math.exp(loss))


def masked_fraction(batch: dict, tokenizer) -> float:
    """The share of a collated batch's text tokens (not special, not padding) that were chosen as targets."""
    labels, ids = batch["labels"], batch["input_ids"]
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids)) & (labels == -100)
    candidates = batch["attention_mask"].bool() & ~special
    return float(((labels != -100) & candidates).sum() / max(int(candidates.sum()), 1))


def number_of_tokens(blocks: DatasetDict) -> dict:
    """Tokens per split (blocks x block length): how much text a run sees."""
    return {split: int(np.sum([len(x) for x in part["input_ids"]])) for split, part in blocks.items()}
