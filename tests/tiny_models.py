"""Tiny randomly initialised classifiers for the mtlib.tuning tests (BERT, DistilBERT, GPT-2, Llama), a batch for
them, one AdamW step, and a fixture that runs each test on one thread. Importing `one_thread` into a test module applies it there."""
import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, GPT2Config, GPT2ForSequenceClassification, LlamaConfig,
                          LlamaForSequenceClassification)

HIDDEN, LAYERS = 32, 2


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_bert(seed=0, layers=LAYERS):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(config).eval()


def tiny_distilbert(seed=0, layers=LAYERS):
    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=100, dim=HIDDEN, n_layers=layers, n_heads=2, hidden_dim=64, num_labels=2,
                              dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, max_position_embeddings=32)
    return DistilBertForSequenceClassification(config).eval()


def tiny_gpt2(seed=0, layers=LAYERS):
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=100, n_embd=HIDDEN, n_layer=layers, n_head=2, n_positions=32, num_labels=2,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=0, bos_token_id=1,
                        eos_token_id=1)
    return GPT2ForSequenceClassification(config).eval()


def tiny_llama(seed=0, layers=LAYERS):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=100, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32, num_labels=2,
                         pad_token_id=0, bos_token_id=1, eos_token_id=1)
    return LlamaForSequenceClassification(config).eval()


def batch(seed=1, n=4, length=7):
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(2, 100, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.tensor([0, 1, 1, 0][:n])}


def logits(model, inputs):
    with torch.no_grad():
        return model(**{k: v for k, v in inputs.items() if k != "labels"}).logits


def adamw_step(model, inputs, lr=1e-2):
    """One AdamW step on `inputs`, with the model in training mode (every dropout is 0); it is left in eval mode."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    model(**inputs).loss.backward()
    optimizer.step()
    model.eval()
