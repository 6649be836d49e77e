"""Build the rehearsal's offline Hugging Face cache: what a Colab reader downloads, tiny and with random weights.

`make rehearse` runs every chapter as the `full` profile does (bert-base-uncased, distilbert-base-uncased, gpt2,
loaded by their hub names) without the hub: this script writes those three checkpoints into a hub cache folder
(`models--<id>/snapshots/<revision>/` and `refs/main`, the layout `from_pretrained` reads when HF_HUB_OFFLINE=1),
built from their configs at a tiny size with random weights, with the real tokenizers from the data mirror
(`tokenizers/bert-base-uncased`, `tokenizers/gpt2`). Chapter 05 also loads `bert-base-chinese` under `full`; the
mirror has no Chinese vocabulary, so its stand-in here is a tiny BERT with the uncased one: the code path is the same.

It also saves the tiny DistilBERT as a plain folder (`<folder>/distilbert`, what `save_pretrained` writes), for the
run that points the encoder role at a local folder of another architecture (`MTLIB_MODELS=encoder=<that folder>`).

    python scripts/rehearsal.py <folder>     # then HF_HUB_CACHE=<folder>/hub HF_HUB_OFFLINE=1 MTLIB_REHEARSAL=1
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from filelock import FileLock
from transformers import (BertConfig, BertForPreTraining, BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM,
                          DistilBertTokenizerFast, GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mtlib import data  # noqa: E402

REVISION = "0" * 39 + "1"  # a fixed snapshot name: the cache is rebuilt, never updated in place
LAYERS, WIDTH = 4, 64  # BERT's 12 blocks become 4, its width 768 becomes 64; DistilBERT keeps half BERT's blocks


def bert_vocab(mirror: Path) -> dict[str, int]:
    lines = (mirror / "tokenizers" / "bert-base-uncased" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {token: i for i, token in enumerate(lines)}


def gpt2_files(mirror: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    folder = mirror / "tokenizers" / "gpt2"
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    lines = (folder / "vocab.bpe").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]  # line 0 is a version header
    return vocab, merges


def tokenizers(mirror: Path) -> dict:
    """The hub tokenizers rebuilt from the mirror's files. transformers 5 needs vocab= and merges= as objects: given
    vocab_file=/merges_file=, the fast classes silently build an empty vocabulary."""
    vocab = bert_vocab(mirror)
    bert = BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)
    distil = DistilBertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=512)
    gpt_vocab, merges = gpt2_files(mirror)
    gpt2 = GPT2TokenizerFast(vocab=gpt_vocab, merges=merges, model_max_length=1024, add_prefix_space=False,
                             unk_token="<|endoftext|>", bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    for name, tok, text, expected in (("bert", bert, "hello world", [101, 7592, 2088, 102]),
                                      ("distilbert", distil, "hello world", [101, 7592, 2088, 102]),
                                      ("gpt2", gpt2, "hello world", [31373, 995])):
        got = tok(text)["input_ids"]
        if got != expected:
            raise SystemExit(f"The {name} tokenizer rebuilt from {mirror} encodes {text!r} as {got}, not {expected}.")
    return {"bert-base-uncased": bert, "distilbert-base-uncased": distil, "gpt2": gpt2, "bert-base-chinese": bert}


def models() -> dict:
    """The three architectures at a tiny size, random weights (seed 0), with the heads their hub checkpoints have."""
    torch.manual_seed(0)
    bert = BertForPreTraining(BertConfig(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=2,
                                         intermediate_size=4 * WIDTH, pad_token_id=0))
    distil = DistilBertForMaskedLM(DistilBertConfig(dim=WIDTH, n_layers=LAYERS // 2, n_heads=2, hidden_dim=4 * WIDTH))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=WIDTH, n_layer=LAYERS, n_head=2))
    return {"bert-base-uncased": bert, "distilbert-base-uncased": distil, "gpt2": gpt2, "bert-base-chinese": bert}


def build(folder: Path, mirror: Path) -> Path:
    """Write the checkpoints into the hub cache `folder/hub` and `folder/distilbert`, replacing what was there.

    Both are written into a temporary folder first and renamed into place, under a lock, so that a run killed halfway
    (or a second `make rehearse` started meanwhile) never leaves a half-written checkpoint where the notebooks look."""
    toks, nets = tokenizers(mirror), models()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / "build.lock")):  # a second `make rehearse` waits, then builds its own copy
        for leftover in folder.glob("build-*"):  # what a killed build left
            shutil.rmtree(leftover, ignore_errors=True)
        return swap_in(folder, toks, nets)


def swap_in(folder: Path, toks: dict, nets: dict) -> Path:
    """Write the checkpoints into a temporary folder beside their places, then rename each into place."""
    tmp = Path(tempfile.mkdtemp(prefix="build-", dir=folder))
    try:
        nets["distilbert-base-uncased"].save_pretrained(tmp / "distilbert")
        toks["distilbert-base-uncased"].save_pretrained(tmp / "distilbert")
        for repo, model in nets.items():
            root = tmp / "hub" / f"models--{repo}"
            model.save_pretrained(root / "snapshots" / REVISION)
            toks[repo].save_pretrained(root / "snapshots" / REVISION)
            (root / "refs").mkdir(parents=True)
            (root / "refs" / "main").write_text(REVISION)
        for name in ("hub", "distilbert"):
            old = tmp / f"old-{name}"
            if (folder / name).exists():
                os.replace(folder / name, old)
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / "hub"


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    mirror = data.mirror_dir()
    if mirror is None:
        raise SystemExit("The rehearsal needs the data mirror's tokenizers: set MTLIB_DATA_DIR=../shared/data.")
    cache = build(Path(sys.argv[1]).resolve(), mirror)
    names = sorted(p.name.removeprefix("models--") for p in cache.glob("models--*"))
    print(f"rehearsal cache: {', '.join(names)} (tiny, random weights) in {cache}; a DistilBERT folder beside it")


if __name__ == "__main__":
    main()
