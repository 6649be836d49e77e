"""mtlib.pretrain: blocks, the masking collator, the fixed-mask held-out loss, further pretraining (chapter 04)."""
import copy
import math

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict
from transformers import LlamaConfig, LlamaForCausalLM

import mtlib
from mtlib import data, pretrain, train, zoo
from mtlib.pretrain import PretrainError

BLOCK = 64


@pytest.fixture(scope="module")
def cfg():
    return mtlib.setup("smoke", verbose=False)


@pytest.fixture(scope="module")
def tokenizer(cfg):
    return zoo.load_tokenizer("encoder", cfg)


@pytest.fixture(scope="module")
def mlm(cfg):
    return zoo.load_model("encoder", cfg, head="masked-lm")


@pytest.fixture(scope="module")
def medical(tokenizer):
    """Held-out and training blocks of the unlabelled medical corpus (a small slice)."""
    corpus = data.load_dataset("medical_text", seed=0)
    return {"train": pretrain.build_blocks(corpus["train"], tokenizer, BLOCK, max_blocks=48),
            "test": pretrain.build_blocks(corpus["test"], tokenizer, BLOCK, max_blocks=16)}


def corpus(*texts):
    return DatasetDict({"train": Dataset.from_dict({"text": list(texts)})})


# ------------------------------------------------------------------------------------------------------ blocks
def test_blocks_have_the_block_size_and_keep_the_text(tokenizer):
    texts = ["The heart pumps blood through the body. " * 6, "Insulin lowers the level of sugar in the blood. " * 5]
    blocks = pretrain.build_blocks(corpus(*texts), tokenizer, block_size=16)["train"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    stream = ids[0] + [tokenizer.sep_token_id] + ids[1] + [tokenizer.sep_token_id]
    assert len(blocks) == len(stream) // 14  # 16 tokens minus [CLS] and [SEP]; the incomplete last block dropped
    for i, row in enumerate(blocks):
        assert len(row["input_ids"]) == 16 and sum(row["attention_mask"]) == 16
        assert row["input_ids"][0] == tokenizer.cls_token_id and row["input_ids"][-1] == tokenizer.sep_token_id
        assert row["input_ids"][1:-1] == stream[i * 14:(i + 1) * 14]
        special = set(tokenizer.all_special_ids)
        assert row["special_tokens_mask"] == [int(t in special) for t in row["input_ids"]]


def test_truncate_mode_keeps_one_example_per_text(tokenizer):
    texts = ["short text about asthma", "a much longer text about the many symptoms of diabetes " * 10]
    out = pretrain.build_blocks(corpus(*texts), tokenizer, block_size=32, mode="truncate")["train"]
    lengths = [len(r) for r in out["input_ids"]]
    assert len(out) == 2 and lengths[0] < 32 and lengths[1] == 32


def test_max_blocks_and_a_single_dataset(tokenizer):
    split = Dataset.from_dict({"text": ["word " * 200] * 5})
    blocks = pretrain.build_blocks(split, tokenizer, block_size=BLOCK, max_blocks=3)
    assert isinstance(blocks, Dataset) and len(blocks) == 3


@pytest.mark.parametrize("texts", [[], ["", "   "]])
def test_empty_corpus_raises(tokenizer, texts):
    with pytest.raises(PretrainError, match="empty"):
        pretrain.build_blocks(DatasetDict({"train": Dataset.from_dict({"text": texts})}), tokenizer)


def test_bad_block_sizes_and_columns_raise(tokenizer):
    ds = corpus("a text about the lungs and the heart")
    with pytest.raises(PretrainError, match="too small"):
        pretrain.build_blocks(ds, tokenizer, block_size=2)
    with pytest.raises(PretrainError, match="maximum"):
        pretrain.build_blocks(ds, tokenizer, block_size=4096)
    with pytest.raises(PretrainError, match="fewer than one block"):
        pretrain.build_blocks(ds, tokenizer, block_size=128)
    with pytest.raises(PretrainError, match="'text' column"):
        pretrain.build_blocks(DatasetDict({"train": Dataset.from_dict({"sentence": ["x y z"]})}), tokenizer)
    with pytest.raises(PretrainError, match="mode"):
        pretrain.build_blocks(ds, tokenizer, mode="chunks")


def test_tokenizer_without_mask_token_raises(tokenizer):
    no_mask = copy.deepcopy(tokenizer)
    no_mask.mask_token = None
    with pytest.raises(PretrainError, match="mask token"):
        pretrain.collator(no_mask)


# ---------------------------------------------------------------------------------------------------- masking
def test_collator_masks_fifteen_percent_and_never_special_tokens(tokenizer, medical):
    torch.manual_seed(0)
    collate = pretrain.collator(tokenizer)
    rows = [medical["train"][i] for i in range(len(medical["train"]))]
    batch = collate(rows)
    original = torch.tensor([r["input_ids"] for r in rows])
    special = torch.tensor([r["special_tokens_mask"] for r in rows]).bool()
    target = batch["labels"] != -100
    assert batch["input_ids"].shape == batch["labels"].shape == (len(rows), BLOCK)
    assert abs(pretrain.masked_fraction(batch, tokenizer) - 0.15) < 0.02
    assert not (target & special).any()
    assert torch.equal(batch["labels"][target], original[target])  # the targets are the original tokens
    assert torch.equal(batch["input_ids"][~target], original[~target])  # the rest is untouched
    as_mask = (batch["input_ids"][target] == tokenizer.mask_token_id).float().mean().item()
    assert 0.7 < as_mask < 0.9  # 80% of the targets become [MASK]


def test_fixed_masks_are_reproducible(tokenizer, medical):
    a = pretrain.fixed_masks(medical["test"], tokenizer, seed=3, batch_size=8)
    b = pretrain.fixed_masks(medical["test"], tokenizer, seed=3, batch_size=8)
    c = pretrain.fixed_masks(medical["test"], tokenizer, seed=4, batch_size=8)
    assert len(a) == 2
    assert all(torch.equal(x["labels"], y["labels"]) and torch.equal(x["input_ids"], y["input_ids"])
               for x, y in zip(a, b))
    assert not all(torch.equal(x["labels"], y["labels"]) for x, y in zip(a, c))


# ------------------------------------------------------------------------------------------------ the loss
def test_heldout_loss_is_deterministic_and_depends_on_the_masks(mlm, tokenizer, medical):
    first = pretrain.mlm_loss(mlm, medical["test"], tokenizer, seed=0)
    torch.manual_seed(123)  # the global generator must not matter
    assert pretrain.mlm_loss(mlm, medical["test"], tokenizer, seed=0) == first
    assert pretrain.mlm_loss(mlm, medical["test"], tokenizer, seed=1) != first
    assert math.isclose(pretrain.masked_lm_perplexity(first), math.exp(first))


def test_masked_losses_score_each_block_as_if_alone(mlm, tokenizer, medical):
    """Per-block sums and counts: each block's loss equals the model's own loss on that block alone."""
    batches = pretrain.fixed_masks(medical["test"], tokenizer, seed=0, batch_size=8)
    sums, counts = pretrain.masked_losses(mlm, batches)
    assert len(sums) == len(counts) == len(medical["test"]) and counts.min() > 0
    assert sums.sum() / counts.sum() == pytest.approx(pretrain.mlm_loss(mlm, batches), rel=1e-12)
    mlm.eval()
    with torch.no_grad():
        first = {k: v[:1] for k, v in batches[0].items()}  # one block, with the very same masks
        assert sums[0] / counts[0] == pytest.approx(mlm(**first).loss.item(), rel=1e-5)
        assert counts[0] == int((first["labels"] != -100).sum())


def test_pack_blocks_cuts_a_stream_into_framed_blocks():
    blocks = pretrain.pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], [100], [101], 0, block_size=5)
    # the stream 1 2 3 0 4 5 0 6 7 8 9 0 (12 tokens) in blocks of 3 text tokens; nothing is left over
    assert blocks == [[100, 1, 2, 3, 101], [100, 0, 4, 5, 101], [100, 0, 6, 7, 101], [100, 8, 9, 0, 101]]
    assert pretrain.pack_blocks([[1, 2, 3], [4, 5]], [100], [101], 0, block_size=5, max_blocks=1) == [[100, 1, 2, 3, 101]]
    assert pretrain.pack_blocks([[1, 2]], [], [], None, block_size=3) == []  # too short for one block


def test_masked_only_gives_the_models_own_loss(mlm, tokenizer, medical):
    mlm.eval()
    with torch.no_grad():
        for batch in pretrain.fixed_masks(medical["test"], tokenizer, seed=0, batch_size=8):
            full, sparse = mlm(**batch), pretrain.MaskedOnly(mlm)(**batch)
            assert torch.allclose(full.loss, sparse.loss, atol=1e-5)
            target = batch["labels"] != -100
            assert torch.allclose(full.logits[target], sparse.logits, atol=1e-4)


def test_a_model_without_an_mlm_head_raises(cfg, tokenizer, medical):
    classifier = zoo.load_model("encoder", cfg, num_labels=2)
    with pytest.raises(PretrainError, match="masked-lm"):
        pretrain.mlm_loss(classifier, medical["test"], tokenizer)
    with pytest.raises(PretrainError, match="masked-lm"):
        pretrain.MaskedOnly(classifier)
    decoder = LlamaForCausalLM(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(PretrainError, match="causal"):
        pretrain.mlm_loss(decoder, medical["test"], tokenizer)


# ------------------------------------------------------------------------------------------------ training
def test_fit_label_check_does_not_misfire_on_mlm_labels(cfg, tokenizer, medical):
    """MLM labels are 2-D token ids far above config.num_labels; train.fit only checks 1-D (class) labels."""
    model = zoo.load_model("encoder", cfg, head="masked-lm")
    loader = pretrain.make_loader(medical["train"].select(range(4)), tokenizer, batch_size=4)
    history = train.fit(model, loader, None, epochs=1, lr=1e-5, verbose=False)
    assert len(history.steps) == 1 and np.isfinite(history.steps[0])


def test_a_few_mlm_steps_lower_the_heldout_medical_loss(cfg, tokenizer, medical):
    torch.manual_seed(0)
    model = zoo.load_model("encoder", cfg, head="masked-lm")
    before = pretrain.mlm_loss(model, medical["test"], tokenizer, seed=0)
    loader = pretrain.make_loader(medical["train"], tokenizer, batch_size=8, seed=0)
    history = train.fit(pretrain.MaskedOnly(model), loader, None, epochs=1, lr=5e-4, verbose=False)
    after = pretrain.mlm_loss(model, medical["test"], tokenizer, seed=0)
    assert len(history.steps) == 6
    assert after < before - 0.5, (before, after)


def test_make_loaders_and_empty_blocks(tokenizer, medical):
    loaders = pretrain.make_loaders(DatasetDict(medical), tokenizer, batch_size=8)
    batch = next(iter(loaders["train"]))
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["input_ids"].shape == (8, BLOCK)
    with pytest.raises(PretrainError, match="empty"):
        pretrain.make_loader(medical["train"].select([]), tokenizer)


def test_copy_encoder_moves_the_encoder_and_keeps_the_pooler(cfg, mlm):
    classifier = zoo.load_model("encoder", cfg, num_labels=3)
    pooler = {k: v.clone() for k, v in classifier.base_model.state_dict().items() if k.startswith("pooler")}
    with torch.no_grad():
        mlm.get_input_embeddings().weight[5].add_(1.0)  # make the source differ from the checkpoint
    try:
        missing = pretrain.copy_encoder(mlm, classifier)
        assert torch.equal(classifier.get_input_embeddings().weight, mlm.get_input_embeddings().weight)
    finally:
        with torch.no_grad():
            mlm.get_input_embeddings().weight[5].sub_(1.0)
    assert sorted(missing) == sorted(pooler)
    assert all(torch.equal(classifier.base_model.state_dict()[k], v) for k, v in pooler.items())
    other = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2))
    with pytest.raises(PretrainError, match="share no encoder weights"):
        pretrain.copy_encoder(other, classifier)
