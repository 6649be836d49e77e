"""mtlib.data: the registry, the mirror, deterministic stratified splits, sampling, clear errors, loaders.

The tests read the offline mirror (../shared/data next to the repository). They point MTLIB_CACHE_DIR at an empty
folder, and the suite blocks the network, so nothing can come from anywhere but the mirror.
"""
import contextlib
import hashlib
import io
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, DatasetDict, Value

from mtlib import data, sources, zoo
from mtlib.data import DataError
from mtlib.runtime import Config

MIRROR = (Path(__file__).parents[1] / ".." / "shared" / "data").resolve()
NEG_POS = ["negative", "positive"]
EXPECTED = {  # name -> (train, validation, test sizes with seed 0), label names (None: an unlabelled corpus)
    "chnsenticorp": ((5435, 777, 1553), NEG_POS),
    "imdb": ((3499, 501, 1000), NEG_POS),
    "legal_text": ((8006, 1144, 2288), None),
    "medical_text": ((2099, 301, 600), None),
    "medquad_qtype": ((2626, 1499, 1478), ["information", "symptoms", "treatment", "frequency", "genetic changes",
                                           "inheritance", "causes", "exams and tests", "outlook", "prevention"]),
    "sentiment_amazon": ((699, 101, 200), NEG_POS),
    "sentiment_imdb": ((699, 101, 200), NEG_POS),
    "sentiment_yelp": ((699, 101, 200), NEG_POS),
    "shakespeare_text": ((5054, 723, 1445), None),
    "sms_spam": ((3901, 558, 1115), ["ham", "spam"]),
    "sst2": ((6920, 872, 1821), NEG_POS),
    "trec": ((4906, 546, 500), ["abbreviation", "description", "entity", "human", "location", "numeric"]),
}
SPLITS = ("train", "validation", "test")


@contextlib.contextmanager
def mirror_env(tmp_cache=None):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTLIB_DATA_DIR", str(MIRROR))
        if tmp_cache is not None:
            mp.setenv("MTLIB_CACHE_DIR", str(tmp_cache))
        yield mp


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    monkeypatch.setenv("MTLIB_DATA_DIR", str(MIRROR))
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sms(tmp_path_factory):
    with mirror_env(tmp_path_factory.mktemp("cache")):
        return data.load_dataset("sms_spam")


@pytest.fixture(scope="module")
def sst2(tmp_path_factory):
    with mirror_env(tmp_path_factory.mktemp("cache")):
        return data.load_dataset("sst2")


@pytest.fixture(scope="module")
def tokenizer():
    return zoo.load_tokenizer("encoder", Config(profile="local", device=torch.device("cpu")))


def rows(split):
    if "label" not in split.features:
        return Counter(split["text"][:])
    return Counter(zip(split["text"][:], split["label"][:]))


def mini_mirror(tmp_path, *relative_paths, damage=None):
    """A mirror folder holding copies of some of the real mirror's files (`damage`: one of them modified)."""
    root = tmp_path / "mirror"
    for rel in relative_paths:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(MIRROR / rel, root / rel)
    if damage:
        raw = (root / damage).read_bytes()
        (root / damage).write_bytes(raw.replace(b"a", b"e", 1))
    return root


def test_mirror_is_there():
    assert MIRROR.is_dir(), f"the offline data mirror is expected at {MIRROR}"


# ----------------------------------------------------------------------------------------------- registry
def test_names():
    assert data.names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_data_set_loads_from_the_mirror(name):
    sizes, names = EXPECTED[name]
    ds = data.load_dataset(name)
    assert isinstance(ds, DatasetDict) and list(ds) == list(SPLITS)
    assert tuple(len(ds[s]) for s in SPLITS) == sizes
    for split in SPLITS:
        features = ds[split].features
        assert features["text"] == Value("string")
        texts = ds[split]["text"][:]
        assert all(isinstance(t, str) and t.strip() for t in texts)
        if names is None:
            assert list(features) == ["text"]
        else:
            assert list(features) == ["text", "label"]
            assert isinstance(features["label"], ClassLabel) and features["label"].names == names
            counts = np.bincount(ds[split]["label"][:], minlength=len(names))
            assert len(counts) == len(names) and (counts > 0).all()  # every class in every split
    if names is None:
        with pytest.raises(DataError, match="no labels"):
            data.label_names(ds)
    else:
        assert data.label_names(ds) == names == data.label_names(ds["test"])


def test_sms_spam_counts(sms):
    assert sum(sum(ds_split["label"][:]) for ds_split in sms.values()) == 747
    assert sum(len(s) for s in sms.values()) == 5574


# ----------------------------------------------------------------------------------------------- splitting
def test_splits_are_deterministic_for_a_seed(sms):
    again = data.load_dataset("sms_spam", seed=0)
    for split in SPLITS:
        assert again[split]["text"][:] == sms[split]["text"][:]
        assert again[split]["label"][:] == sms[split]["label"][:]


def test_splits_differ_across_seeds(sms):
    other = data.load_dataset("sms_spam", seed=1)
    assert tuple(len(other[s]) for s in SPLITS) == EXPECTED["sms_spam"][0]
    for split in SPLITS:
        assert other[split]["text"][:] != sms[split]["text"][:]


def test_given_splits_do_not_depend_on_the_seed(sst2):
    other = data.load_dataset("sst2", seed=3)
    for split in SPLITS:
        assert other[split]["text"][:] == sst2[split]["text"][:]


def test_splits_partition_the_rows(sms):
    """train, validation and test are disjoint and together hold every row once (the texts repeat, so count rows)."""
    texts, labels = data.read_raw("sms_spam")["all"]
    assert sum((rows(sms[s]) for s in SPLITS), Counter()) == Counter(zip(texts, labels))


def test_unique_texts_land_in_one_split():
    ds = data.load_dataset("medical_text", seed=2)
    parts = [set(ds[s]["text"][:]) for s in SPLITS]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    assert sum(map(len, parts)) == len(data.read_raw("medical_text")["all"][0])


def test_validation_carved_from_train_when_missing():
    raw = data.read_raw("trec")
    ds = data.load_dataset("trec", seed=0)
    assert ds["test"]["text"][:] == raw["test"][0] and ds["test"]["label"][:] == raw["test"][1]
    assert rows(ds["train"]) + rows(ds["validation"]) == Counter(zip(*raw["train"]))
    assert data.load_dataset("trec", seed=1)["validation"]["text"][:] != ds["validation"]["text"][:]


def _assert_stratified(parts, whole_labels, num_classes):
    """Every class gets its share of every part, up to rounding: what a stratified split guarantees."""
    whole = np.bincount(whole_labels, minlength=num_classes)
    for labels in parts:
        counts = np.bincount(labels, minlength=num_classes)
        expected = whole * len(labels) / len(whole_labels)
        assert np.abs(counts - expected).max() <= 1, (counts, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratification_keeps_class_ratios(seed):
    ds = data.load_dataset("sms_spam", seed=seed)
    _, labels = data.read_raw("sms_spam")["all"]
    _assert_stratified([ds[s]["label"][:] for s in SPLITS], labels, 2)
    trec = data.load_dataset("trec", seed=seed)
    _assert_stratified([trec["train"]["label"][:], trec["validation"]["label"][:]],
                       data.read_raw("trec")["train"][1], 6)


def test_custom_split_fractions():
    ds = data.load_dataset("sentiment_yelp", splits=(0.5, 0.25, 0.25))
    assert [len(ds[s]) for s in SPLITS] == [500, 250, 250]


@pytest.mark.parametrize("splits", [(0.5, 0.5, 0.0), (0.7, 0.2, 0.2), (-0.1, 0.6, 0.5)])
def test_bad_split_fractions(splits):
    with pytest.raises(DataError, match="three positive fractions that sum to 1"):
        data.load_dataset("sentiment_yelp", splits=splits)


# ---------------------------------------------------------------------------------------------- balancing
def test_balance_sms_spam():
    ds = data.load_dataset("sms_spam", balance=True)
    assert [len(ds[s]) for s in SPLITS] == [1045, 150, 299]
    labels = np.concatenate([ds[s]["label"][:] for s in SPLITS])
    assert np.bincount(labels).tolist() == [747, 747]
    for split in SPLITS:
        counts = np.bincount(ds[split]["label"][:])
        assert abs(counts[0] - counts[1]) <= 1
    # a subset of the real rows: every spam message, and 747 of the ham ones
    texts, raw_labels = data.read_raw("sms_spam")["all"]
    everything = Counter(zip(texts, raw_labels))
    kept = sum((rows(ds[s]) for s in SPLITS), Counter())
    assert not kept - everything
    assert Counter({k: v for k, v in kept.items() if k[1] == 1}) == Counter({k: v for k, v in everything.items()
                                                                             if k[1] == 1})


def test_balance_depends_on_the_seed():
    a = data.load_dataset("sms_spam", balance=True, seed=0)
    b = data.load_dataset("sms_spam", balance=True, seed=0)
    c = data.load_dataset("sms_spam", balance=True, seed=1)
    assert a["train"]["text"][:] == b["train"]["text"][:]
    assert a["train"]["text"][:] != c["train"]["text"][:]


def test_balance_rows():
    texts, labels = data.balance_rows(list("abcdefg"), [0, 0, 0, 1, 1, 0, 2], seed=0)
    assert len(texts) == 3 and sorted(labels) == [0, 1, 2]
    assert [t for t, l in zip(texts, labels) if l == 2] == ["g"]


def test_balance_needs_labels():
    with pytest.raises(DataError, match="'legal_text' has no labels"):
        data.load_dataset("legal_text", balance=True)


# ----------------------------------------------------------------------------------------------- sampling
def test_sample_sizes_and_untouched_splits(sms):
    small = data.sample(sms, train=200, validation=50, seed=0)
    assert [len(small[s]) for s in SPLITS] == [200, 50, len(sms["test"])]
    assert small["test"]["text"][:] == sms["test"]["text"][:]
    assert data.sample(sms, train=None)["train"]["text"][:] == sms["train"]["text"][:]
    assert data.sample(sms, train=len(sms["train"]))["train"]["text"][:] == sms["train"]["text"][:]
    assert len(sms["train"]) == 3901  # the input is not changed


def test_sample_is_stratified_and_in_order(sms):
    small = data.sample(sms, train=300, seed=4)
    _assert_stratified([small["train"]["label"][:]], sms["train"]["label"][:], 2)
    # the kept rows keep their order: each is found after the previous one
    source, position = sms["train"]["text"][:], -1
    for text in small["train"]["text"][:]:
        position = source.index(text, position + 1)


def test_sample_is_deterministic(sms):
    a = data.sample(sms, train=100, test=100, seed=0)
    b = data.sample(sms, train=100, test=100, seed=0)
    c = data.sample(sms, train=100, test=100, seed=1)
    assert a["train"]["text"][:] == b["train"]["text"][:] and a["test"]["text"][:] == b["test"]["text"][:]
    assert a["train"]["text"][:] != c["train"]["text"][:]


@pytest.mark.parametrize("n", [5000, 3902, 0, -1])
def test_sample_too_many_rows(sms, n):
    with pytest.raises(DataError, match=rf"Cannot sample {n} rows from the 'train' split, which has 3901"):
        data.sample(sms, train=n)


def test_sample_unknown_split(sms):
    with pytest.raises(DataError, match="No split 'dev'; the splits are train, validation, test"):
        data.sample(sms, dev=10)


@pytest.mark.parametrize("n", [1, 2, 3899, 3900])
def test_sample_any_size_up_to_the_split(sms, n):
    """Sizes too small (or too close to the whole split) to stratify still give n rows."""
    assert len(data.sample(sms, train=n, seed=0)["train"]) == n


def test_sample_a_class_with_a_single_row():
    ds = data.load_dataset("trec")
    tiny = ds["test"].select([i for i, l in enumerate(ds["test"]["label"][:]) if l != 0][:30] +
                             [ds["test"]["label"][:].index(0)])  # 30 rows, then one row of class 0
    out = data.sample(DatasetDict(test=tiny), test=10, seed=0)
    assert len(out["test"]) == 10


def test_sample_unlabelled():
    ds = data.load_dataset("medical_text")
    out = data.sample(ds, train=10, seed=0)
    assert len(out["train"]) == 10 and set(out["train"]["text"][:]) <= set(ds["train"]["text"][:])


# ------------------------------------------------------------------------------------------------- errors
def test_unknown_name():
    with pytest.raises(DataError) as err:
        data.load_dataset("sst-2")
    assert str(err.value) == f"Unknown data set 'sst-2'. Registered: {', '.join(sorted(EXPECTED))}."


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_data_dir_not_a_folder(kind, tmp_path, monkeypatch):
    path = tmp_path / "not-a-folder"
    if kind == "file":
        path.write_text("x")
    monkeypatch.setenv("MTLIB_DATA_DIR", str(path))
    with pytest.raises(DataError, match=r"MTLIB_DATA_DIR=.*not-a-folder.* is not a folder"):
        data.load_dataset("sst2")


def test_file_missing_from_the_mirror(tmp_path, monkeypatch):
    mirror = mini_mirror(tmp_path, "en_sentiment/sst2/stsa.binary.train", "en_sentiment/sst2/stsa.binary.test")
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    with pytest.raises(DataError) as err:
        data.load_dataset("sst2")
    message = str(err.value)
    assert message.startswith("Could not load the data set 'sst2' (SST-2")
    assert f"the mirror: {mirror / 'en_sentiment/sst2/stsa.binary.dev'} is missing" in message
    assert f"a download from {data.SENT_CNN}/stsa.binary.dev" in message
    assert "network access is blocked" in message  # the download was tried, and failed
    assert "Fixes: point MTLIB_DATA_DIR at the offline data mirror" in message
    assert "stsa.binary.train" not in message and "stsa.binary.test" not in message  # those were found
    assert not (tmp_path / "cache" / "data").exists()  # nothing half-downloaded


def test_file_missing_everywhere_mentions_the_hub(tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("MTLIB_DATA_DIR", str(tmp_path / "mirror"))
    with pytest.raises(DataError) as err:
        data.load_dataset("sms_spam")
    message = str(err.value)
    assert "'sms_spam'" in message
    assert (f"a rebuild from public sources (mtlib.sources 'sms_spam'): downloading {sources.SMS_URL} failed: "
            "<urlopen error network access is blocked") in message  # the recipe was tried, offline here
    assert "the Hugging Face hub (ucirvine/sms_spam)" in message
    assert message.index("a rebuild from public sources") < message.index("the Hugging Face hub")
    assert not (tmp_path / "cache" / "data").exists()  # nothing built, nothing cached


def test_no_mirror_configured(monkeypatch):
    monkeypatch.delenv("MTLIB_DATA_DIR")
    assert data.mirror_dir() is None
    with pytest.raises(DataError) as err:
        data.load_dataset("sentiment_yelp")
    message = str(err.value)
    assert "the mirror: MTLIB_DATA_DIR is not set" in message
    assert f"a download from {data.UCI_SENT}/yelp_labelled.txt" in message
    assert "network access is blocked" in message


def test_download_cache_is_used(tmp_path, monkeypatch):
    """A file missing from the mirror but present in MTLIB_CACHE_DIR/data (a past download) is used."""
    rel = "en_sentiment/sst2/stsa.binary.dev"
    mirror = mini_mirror(tmp_path, "en_sentiment/sst2/stsa.binary.train", "en_sentiment/sst2/stsa.binary.test")
    (tmp_path / "cache" / "data" / rel).parent.mkdir(parents=True)
    shutil.copyfile(MIRROR / rel, tmp_path / "cache" / "data" / rel)
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    assert len(data.load_dataset("sst2")["validation"]) == 872


def test_damaged_download_is_fetched_again(tmp_path, monkeypatch):
    """A truncated file in the download cache (a killed download) is deleted and downloaded again, never read."""
    rel = "en_sentiment/sst2/stsa.binary.dev"
    mirror = mini_mirror(tmp_path, "en_sentiment/sst2/stsa.binary.train", "en_sentiment/sst2/stsa.binary.test")
    cached = tmp_path / "cache" / "data" / rel
    cached.parent.mkdir(parents=True)
    cached.write_bytes((MIRROR / rel).read_bytes()[:1000])
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    with pytest.raises(DataError) as err:
        data.load_dataset("sst2")
    assert f"a download from {data.SENT_CNN}/stsa.binary.dev" in str(err.value)  # tried again; offline here
    assert not cached.exists()


def test_download_lands_in_the_cache(tmp_path, monkeypatch):
    """A verified download is kept in the cache under its name, with no temporary file left beside it (the atomic
    write itself: test_cache.py)."""
    rel = "en_sentiment/sst2/stsa.binary.dev"
    mirror = mini_mirror(tmp_path, "en_sentiment/sst2/stsa.binary.train", "en_sentiment/sst2/stsa.binary.test")
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    payload = (MIRROR / rel).read_bytes()

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Response(payload))
    assert len(data.load_dataset("sst2")["validation"]) == 872
    folder = tmp_path / "cache" / "data" / "en_sentiment" / "sst2"
    assert sorted(p.name for p in folder.iterdir()) == ["stsa.binary.dev"]  # no temporary file left
    assert (folder / "stsa.binary.dev").read_bytes() == payload


def test_checksum_mismatch(tmp_path, monkeypatch):
    rel = "en_sentiment/uci_sentiment_labelled_sentences/yelp_labelled.txt"
    mirror = mini_mirror(tmp_path, rel, damage=rel)
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    with pytest.raises(DataError) as err:
        data.load_dataset("sentiment_yelp")
    message = str(err.value)
    assert f"Checksum mismatch for {mirror / rel}" in message
    assert data.REGISTRY["sentiment_yelp"].files[0].sha256 in message
    assert hashlib.sha256((mirror / rel).read_bytes()).hexdigest() in message


def test_checksum_mismatch_after_the_file_changes(tmp_path, monkeypatch):
    """The checksum is recomputed when a verified file is later modified."""
    rel = "en_sentiment/uci_sentiment_labelled_sentences/yelp_labelled.txt"
    mirror = mini_mirror(tmp_path, rel)
    monkeypatch.setenv("MTLIB_DATA_DIR", str(mirror))
    assert len(data.load_dataset("sentiment_yelp")["test"]) == 200
    raw = (mirror / rel).read_bytes()
    (mirror / rel).write_bytes(raw[:-2] + (b"0" if raw[-2:-1] == b"1" else b"1") + raw[-1:])
    with pytest.raises(DataError, match="Checksum mismatch"):
        data.load_dataset("sentiment_yelp")


def test_empty_split(tmp_path, monkeypatch):
    """A data set whose files hold no test rows: a clear error rather than an empty split."""
    root = tmp_path / "mirror"
    (root / "tiny").mkdir(parents=True)
    lines = [json.dumps({"split": split, "answer": f"Answer {i} about {split}.", "qtype": "symptoms"})
             for i, split in enumerate(["train"] * 4 + ["validation"] * 2)]
    raw = ("\n".join(lines) + "\n").encode()
    (root / "tiny" / "rows.jsonl").write_bytes(raw)
    entry = data.Entry("a tiny test set", (data.File("tiny/rows.jsonl", hashlib.sha256(raw).hexdigest()),),
                       data._medquad, data.MEDQUAD_QTYPES)
    monkeypatch.setitem(data.REGISTRY, "tiny", entry)
    monkeypatch.setenv("MTLIB_DATA_DIR", str(root))
    with pytest.raises(DataError, match="The 'test' split of 'tiny' is empty"):
        data.load_dataset("tiny")


# ------------------------------------------------------------------------------------- tokenise and batch
# (each split costs make_loaders about a second here, mostly datasets fingerprinting the tokenizer: the tests below
# pass only the splits they look at)
@pytest.fixture(scope="module")
def small_sst2(sst2):
    return data.sample(sst2, train=40, validation=20, test=12, seed=0)


def _unpadded(batch):
    return [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(batch["input_ids"], batch["attention_mask"])]


def _order(loader):
    return [row for batch in loader for row in _unpadded(batch)]


def test_make_loaders_pads_per_batch_in_order(small_sst2, tokenizer):
    loaders = data.make_loaders(small_sst2, tokenizer, batch_size=8, max_length=64, seed=0)
    assert set(loaders) == set(SPLITS)
    encoded = tokenizer(small_sst2["validation"]["text"][:], truncation=True, max_length=64)["input_ids"]
    batches = list(loaders["validation"])
    assert [len(b["labels"]) for b in batches] == [8, 8, 4]
    widths = []
    for i, batch in enumerate(batches):
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}  # label renamed to labels
        rows_ = encoded[8 * i: 8 * i + 8]
        width = max(map(len, rows_))
        assert batch["input_ids"].shape == (len(rows_), width)  # padded to the batch's longest row
        assert _unpadded(batch) == [tuple(r) for r in rows_]  # validation keeps the data set's order
        assert (batch["input_ids"][~batch["attention_mask"].bool()] == tokenizer.pad_token_id).all()
        widths.append(width)
    assert len(set(widths)) > 1 and max(widths) <= 64
    labels = torch.cat([b["labels"] for b in batches])
    assert labels.dtype == torch.int64 and labels.tolist() == small_sst2["validation"]["label"][:]
    assert torch.cat([b["labels"] for b in loaders["test"]]).tolist() == small_sst2["test"]["label"][:]
    # test is not shuffled either; train is
    encoded_test = tokenizer(small_sst2["test"]["text"][:], truncation=True, max_length=64)["input_ids"]
    assert _order(loaders["test"]) == [tuple(r) for r in encoded_test]
    encoded_train = [tuple(r) for r in tokenizer(small_sst2["train"]["text"][:], truncation=True,
                                                 max_length=64)["input_ids"]]
    epoch1, epoch2 = _order(loaders["train"]), _order(loaders["train"])
    assert Counter(epoch1) == Counter(encoded_train)  # every row once
    assert epoch1 != encoded_train  # shuffled
    assert epoch2 != epoch1  # and reshuffled every epoch


def test_make_loaders_truncates(small_sst2, tokenizer):
    loaders = data.make_loaders(DatasetDict(train=small_sst2["train"]), tokenizer, batch_size=40, max_length=6)
    assert list(loaders) == ["train"]
    batch = next(iter(loaders["train"]))
    assert batch["input_ids"].shape == (40, 6)
    assert (batch["input_ids"][:, -1] == tokenizer.sep_token_id).all()


def test_make_loaders_shuffle_depends_on_the_seed(small_sst2, tokenizer):
    train_only = DatasetDict(train=small_sst2["train"])
    make = lambda seed: _order(data.make_loaders(train_only, tokenizer, batch_size=8, max_length=16,
                                                 seed=seed)["train"])
    first = make(0)
    assert make(0) == first  # the same order for the same seed
    assert make(1) != first
    assert Counter(make(1)) == Counter(first)


def test_make_loaders_custom_collator(small_sst2, tokenizer):
    calls = []

    def collator(features):
        calls.append(sorted(features[0]))
        return {"n": len(features)}

    loaders = data.make_loaders(DatasetDict(validation=small_sst2["validation"]), tokenizer, batch_size=16,
                                max_length=16, collator=collator)
    assert [b["n"] for b in loaders["validation"]] == [16, 4]
    assert calls == [["attention_mask", "input_ids", "labels", "token_type_ids"]] * 2


def test_tokenize(small_sst2, tokenizer):
    tokens = data.tokenize(DatasetDict(test=small_sst2["test"]), tokenizer, max_length=2)
    assert set(tokens["test"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert all(ids == [tokenizer.cls_token_id, tokenizer.sep_token_id] for ids in tokens["test"]["input_ids"][:])
    assert tokens["test"]["labels"][:] == small_sst2["test"]["label"][:]


@pytest.mark.parametrize("max_length", [1, 0, -5])
def test_tokenize_rejects_short_max_length(small_sst2, tokenizer, max_length):
    with pytest.raises(DataError, match=f"max_length must be at least 2 tokens, got {max_length}"):
        data.tokenize(small_sst2, tokenizer, max_length=max_length)


def test_tokenize_unlabelled(tokenizer):
    ds = data.sample(data.load_dataset("medical_text"), train=4)
    tokens = data.tokenize(DatasetDict(train=ds["train"]), tokenizer, max_length=8)
    assert tokens["train"].column_names == ["input_ids", "token_type_ids", "attention_mask"]
    assert len(tokens["train"]) == 4 and max(map(len, tokens["train"]["input_ids"][:])) <= 8


# -------------------------------------------------------------------------------------- length-grouped batches
def test_length_grouped_batches_cover_every_row_once_and_pad_less():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=1000).tolist()
    sampler = data.LengthGroupedBatches(lengths, batch_size=16, generator=torch.Generator().manual_seed(0), group=10)
    epoch1, epoch2 = list(sampler), list(sampler)
    assert len(epoch1) == len(sampler) == 63
    assert sorted(i for b in epoch1 for i in b) == list(range(1000))  # every row once per epoch
    assert epoch1 != epoch2  # reshuffled every epoch
    padded = lambda batches: sum(max(lengths[i] for i in b) * len(b) for b in batches)
    plain = [list(range(k, min(k + 16, 1000))) for k in range(0, 1000, 16)]  # the rows in random order
    assert padded(epoch1) < 0.7 * padded(plain)  # far less padding than random batches


def test_length_grouped_batches_group_size_follows_trainer():
    make = lambda n, bs: data.LengthGroupedBatches(list(range(n)), bs, torch.Generator()).group
    assert make(599, 32) == 4 and make(100_000, 32) == 50 and make(20, 16) == 1


def test_length_grouped_batches_same_seed_same_order_and_bad_size():
    lengths = list(range(100))
    make = lambda seed: list(data.LengthGroupedBatches(lengths, 8, torch.Generator().manual_seed(seed)))
    assert make(3) == make(3) and make(3) != make(4)
    with pytest.raises(data.DataError, match="batch_size must be at least 1"):
        data.LengthGroupedBatches(lengths, 0, torch.Generator())


def test_make_loaders_group_by_length(small_sst2, tokenizer):
    loaders = data.make_loaders(DatasetDict(train=small_sst2["train"], test=small_sst2["test"]), tokenizer,
                                batch_size=8, max_length=64, seed=0, group_by_length=True)
    encoded = [tuple(r) for r in tokenizer(small_sst2["train"]["text"][:], truncation=True, max_length=64)["input_ids"]]
    batches = list(loaders["train"])
    assert Counter(r for b in batches for r in _unpadded(b)) == Counter(encoded)  # every row once
    assert _order(loaders["test"]) == [tuple(r) for r in tokenizer(small_sst2["test"]["text"][:], truncation=True,
                                                                    max_length=64)["input_ids"]]  # test keeps its order


# ------------------------------------------------------------------------------------------ your own data
def _reviews(n_per_class=20):
    import pandas as pd
    rows = [{"review": f"great product number {i}", "stars": "good"} for i in range(n_per_class)]
    rows += [{"review": f"awful product number {i}", "stars": "bad"} for i in range(n_per_class)]
    return pd.DataFrame(rows)


def test_from_frame_gives_the_books_schema():
    ds = data.from_frame(_reviews(), text="review", label="stars", seed=0)
    assert list(ds) == ["train", "validation", "test"]
    assert data.label_names(ds) == ["bad", "good"]  # sorted distinct values
    assert sum(len(part) for part in ds.values()) == 40
    assert set(ds["train"].features) == {"text", "label"}
    for part in ds.values():  # stratified: both classes in every split
        assert set(part["label"]) == {0, 1}
    first = ds["train"][0]
    assert (first["label"] == 1) == first["text"].startswith("great")


def test_from_frame_reads_a_csv_and_is_deterministic(tmp_path):
    path = tmp_path / "mine.csv"
    _reviews().rename(columns={"review": "text", "stars": "label"}).to_csv(path, index=False)
    a, b = data.from_frame(path, seed=3), data.from_frame(str(path), seed=3)
    assert a["test"]["text"] == b["test"]["text"]
    assert data.from_frame(path, seed=4)["test"]["text"] != a["test"]["text"]


def test_from_frame_drops_empty_rows_and_balances():
    frame = _reviews(30)
    frame.loc[0, "review"] = "   "
    frame.loc[1, "stars"] = None
    frame = frame.iloc[:50]  # 30 good (2 unusable) and 20 bad
    ds = data.from_frame(frame, text="review", label="stars")
    assert sum(len(p) for p in ds.values()) == 48
    balanced = data.from_frame(frame, text="review", label="stars", balance=True)
    labels = [l for p in balanced.values() for l in p["label"]]
    assert labels.count(0) == labels.count(1) == 20


@pytest.mark.parametrize("bad, message", [
    (lambda f: f.drop(columns="stars"), r"No column 'stars'.*columns are \['review'\]"),
    (lambda f: f.assign(stars="good"), r"holds 1 class\(es\) \['good'\].*at least two"),
    (lambda f: f.iloc[:23], r"Class\(es\) \['bad'\] have fewer than 5 rows"),
])
def test_from_frame_clear_errors(bad, message):
    with pytest.raises(data.DataError, match=message):
        data.from_frame(bad(_reviews()), text="review", label="stars")


def test_from_frame_wrong_source(tmp_path):
    with pytest.raises(data.DataError, match="No CSV file at"):
        data.from_frame(tmp_path / "missing.csv")
    with pytest.raises(data.DataError, match="not a list"):
        data.from_frame([("a", 1)])
