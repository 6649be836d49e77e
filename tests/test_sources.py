"""mtlib.sources and the rebuild path of mtlib.data: data sets that readers without the mirror (Colab) can still load.

(a) every recipe on a tiny synthetic input in its source's format; (b) `read_raw` with no mirror and the downloads
mocked: it rebuilds, checks the sha256, caches, and fails clearly; (c) every data set a chapter loads has a source
outside the mirror. No network: the downloads are replaced by functions that return bytes made here.
"""
import dataclasses
import hashlib
import io
import itertools
import json
import lzma
import re
import struct
import tarfile
import urllib.error
from pathlib import Path

import pytest

from mtlib import data, sources
from mtlib.data import DataError

ROOT = Path(__file__).parents[1]


def sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch, tmp_path):
    monkeypatch.delenv("MTLIB_DATA_DIR", raising=False)
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------------------------------------------ MedQuAD
def focus_in(*buckets, skip=()):
    """A disease name whose bucket (sha1 of the lower-cased name, mod 10) is one of `buckets`."""
    return next(f"Disease {i}" for i in itertools.count() if f"Disease {i}" not in skip
                and int(hashlib.sha1(f"disease {i}".encode()).hexdigest(), 16) % 10 in buckets)


TRAIN, VALIDATION, TEST = focus_in(6, 7), focus_in(8), focus_in(9)
UNLABELLED = focus_in(0, 1, 2, 3, 4, 5)
FEVER = "Fever, cough and a headache that lasts for days (fièvre)."


def medquad_xml(focus, *pairs):
    """A MedQuAD document: (question type, question, answer) per QA pair."""
    qa = "".join(f'<QAPair pid="{i}"><Question qid="1-{i}" qtype="{qtype}">{question}</Question>'
                 f"<Answer>{answer}</Answer></QAPair>" for i, (qtype, question, answer) in enumerate(pairs, 1))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Document id="1" source="T"><Focus>{focus}</Focus>'
            f"<QAPairs>{qa}</QAPairs></Document>")


def medquad_tarball(documents):
    """A tarball laid out as GitHub's codeload serves the repository: {(subset, file name): XML}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for (subset, name), xml in documents.items():
            raw = xml.encode("utf-8")
            info = tarfile.TarInfo(f"MedQuAD-{sources.MEDQUAD_COMMIT}/{subset}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


LONG = "How long does it last? " + "word " * 500
DOCUMENTS = {
    ("1_CancerGov_QA", "0000001.xml"): medquad_xml(
        TRAIN,
        ("symptoms", "What are the symptoms?", f"What are the   symptoms of it ?\n  {FEVER}"),
        ("treatment", "How is it treated?", "Have you ever wondered how it is treated? Doctors prescribe rest."),
        ("causes", "What causes it?", "What causes it? Nobody knows yet."),  # under 40 characters once cut
        ("outlook", "What is the outlook?", LONG),
        ("considerations", "What to consider?", "Some long answer about things to consider, over forty."),
        ("information", "What is it?", "What is it? Why does it matter? It matters because it is common.")),
    ("1_CancerGov_QA", "0000002.xml"): medquad_xml(TEST, ("symptoms", "Symptoms?", FEVER)),  # repeated in subset
    ("2_GARD_QA", "0000003.xml"): medquad_xml(TEST, ("symptoms", "Symptoms?", FEVER)),  # another subset: kept
    ("3_GHR_QA", "0000004.xml"): medquad_xml(
        VALIDATION, ("inheritance", "Is it inherited?", "Is it inherited? " + "i" * 40),  # 40 characters: kept
        ("frequency", "How common is it?", "How common is it? " + "f" * 39)),  # 39: dropped
    ("4_MPlus_Health_Topics_QA", "0000005.xml"): medquad_xml(
        UNLABELLED,
        ("information", "What is it?", "What is it? " + "long " * 450),
        ("symptoms", "Which signs?", "Which signs? Short."),
        ("considerations", "More?", "Any question type is fine for the unlabelled text.")),
    ("5_NIDDK_QA", "0000006.xml"): medquad_xml(
        UNLABELLED, ("causes", "Why?", "Any question type is fine for the unlabelled text.")),  # the same text
    ("10_MPlus_ADAM_QA", "0000007.xml"): medquad_xml(  # a subset whose answers were removed: not read
        TRAIN, ("symptoms", "What are the symptoms?", "This answer comes from a subset that is left out.")),
}


def test_medquad_recipe(monkeypatch):
    monkeypatch.setattr(sources, "N_UNLABELLED", 2)
    built = sources.build_medquad({"medquad.tar.gz": medquad_tarball(DOCUMENTS)})
    assert sorted(built) == ["medquad/medquad_qtype.jsonl", "medquad/medquad_unlabelled_answers.txt"]

    raw = built["medquad/medquad_qtype.jsonl"]
    assert FEVER.encode("utf-8") in raw  # UTF-8, not \u escapes
    rows = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert all(list(r) == ["split", "qtype", "focus", "source", "question", "answer"] for r in rows)
    cut = LONG[:2000][len("How long does it last? "):]  # cut at 2,000 characters, then the question removed
    assert len(cut) == 1977
    assert [(r["split"], r["focus"], r["qtype"], r["source"], r["answer"]) for r in rows] == [
        # sorted by split, focus, question type; "causes" too short, "considerations" not a class, the repeat
        # within 1_CancerGov_QA dropped, subset 10 not read
        ("test", TEST, "symptoms", "2_GARD_QA", FEVER),
        ("train", TRAIN, "information", "1_CancerGov_QA", "Why does it matter? It matters because it is common."),
        ("train", TRAIN, "outlook", "1_CancerGov_QA", cut),
        ("train", TRAIN, "symptoms", "1_CancerGov_QA", FEVER),
        ("train", TRAIN, "treatment", "1_CancerGov_QA", "Have you ever wondered how it is treated? Doctors prescribe "
                                                        "rest."),  # "Have" is not a question word of the rule
        ("validation", VALIDATION, "inheritance", "3_GHR_QA", "i" * 40)]
    assert rows[3]["question"] == "What are the symptoms?"

    texts = built["medquad/medquad_unlabelled_answers.txt"].decode("utf-8").split("\n")
    assert texts[-1] == ""  # one a line, a final newline
    pool = ["long " * 449 + "long",  # not cut; the question removed, the spaces normalised
            "Any question type is fine for the unlabelled text."]  # in two subsets, kept once
    by_sha1 = sorted(pool, key=lambda t: hashlib.sha1(t.encode()).hexdigest())
    assert texts[:-1] == by_sha1  # N_UNLABELLED = 2 of them, in sha1 order
    monkeypatch.setattr(sources, "N_UNLABELLED", 1)
    again = sources.build_medquad({"medquad.tar.gz": medquad_tarball(DOCUMENTS)})
    assert again["medquad/medquad_unlabelled_answers.txt"].decode() == by_sha1[0] + "\n"


def test_medquad_tarball_without_the_subsets():
    with pytest.raises(ValueError, match="holds none of the subsets"):
        sources.build_medquad({"medquad.tar.gz": medquad_tarball({("README", "x.xml"): "<a/>"})})


# --------------------------------------------------------------------------------------------------------- USLM
LAW = ('<?xml version="1.0" encoding="UTF-8"?><?xml-stylesheet type="text/css" href="uslm.css"?>'
       '<pLaw xmlns="http://schemas.gpo.gov/xml/uslm"><?I97 129 STAT. ?><!-- a comment -->'
       "<meta><docNumber>4</docNumber><title>Not in the text</title></meta>\n"
       "<section><num>Sec. 2.</num><heading>Defi\u00adnitions.</heading>\n"
       "<p>The \t  term <term>agency</term> means\u2002an office.</p><p>(b)</p><p>Other text here.</p></section>"
       "<part><num>PART</num></part><p>A—</p><p>General provisions</p><p>Done</p></pLaw>")


def test_legal_recipe():
    downloads = {name: f'<pLaw xmlns="u"><p>Document number {i}</p></pLaw>'.encode()
                 for i, name in enumerate(sources.USLM_FILES)}
    downloads[next(iter(sources.USLM_FILES))] = LAW.encode("utf-8")
    built = sources.build_legal(downloads)
    assert list(built) == ["domain_text/legal/us_law_sample.txt"]
    first = ("Sec. 2. Definitions.\n"  # a space after <num>; the soft hyphen dropped; <meta> skipped
             "The term agency means\u2002an office.\n"  # inline <term>; ASCII blanks collapsed, U+2002 kept
             "(b) Other text here.\n"  # a label line joined to the next
             "PART A— General provisions\n"  # joined while the line is still a label
             "Done")  # a short last line stays
    others = [f"Document number {i}" for i in range(1, len(sources.USLM_FILES))]
    assert built["domain_text/legal/us_law_sample.txt"].decode("utf-8") == "\n\n".join([first, *others]) + "\n"


# ----------------------------------------------------------------------------------------------------- SMS spam
SMS_RAW = b"Label\tSMS\nham\tSee you at noon\nspam\tWIN a prize now, txt 80082\n"


def test_sms_recipe():
    built = sources.build_sms({"SMSSpamCollection": SMS_RAW})
    assert built == {"sms_spam/SMSSpamCollection": b"ham\tSee you at noon\nspam\tWIN a prize now, txt 80082\n"}
    assert data._sms(list(built.values())) == {"all": (["See you at noon", "WIN a prize now, txt 80082"], [0, 1])}
    with pytest.raises(ValueError, match="not the header"):
        sources.build_sms({"SMSSpamCollection": SMS_RAW[len(sources.SMS_HEADER):]})


# --------------------------------------------------------------------------------------------------------- IMDB
def _ints(*values):
    return struct.pack(f">{len(values)}i", *values)


def r_string(text, latin1=False):
    raw = text.encode("latin-1" if latin1 else "utf-8")
    return _ints(9 | ((4 if latin1 else 8) << 12), len(raw)) + raw


def r_symbol(name):
    return _ints(1) + r_string(name)


def r_vector(kind, items, attributes=b""):
    body = _ints(*items) if kind == 13 else b"".join(items)
    return _ints(kind | (bool(attributes) << 9), len(items)) + body + attributes


def r_pairlist(*cells):
    return b"".join(_ints(2 | 1 << 10) + tag + value for tag, value in cells) + _ints(254)


def movie_review_rdata():
    """An xz-compressed .RData file (XDR format 2) like text2vec's: a data frame `movie_review`, plus an object whose
    attribute name is a reference to a symbol read before."""
    strings = lambda values: r_vector(16, [r_string(*v) if isinstance(v, tuple) else r_string(v) for v in values])
    frame = r_vector(19, [strings(["1_9", "2_1"]), r_vector(13, [1, 0]),
                          strings(['A "great" film.\nTruly.', ("Café noir, bof.", True)])],
                     r_pairlist((r_symbol("names"), strings(["id", "sentiment", "review"])),
                                (r_symbol("class"), strings(["data.frame"])),
                                (r_symbol("row.names"), r_vector(13, [-2147483648, -2]))))
    other = r_vector(13, [7], r_pairlist((_ints(255 | (2 << 8)), strings(["seven"]))))  # symbol 2: "names"
    body = r_pairlist((r_symbol("movie_review"), frame), (r_symbol("other"), other))
    return lzma.compress(b"RDX2\nX\n" + _ints(2, 0x040201, 0x020300) + body)


IMDB_CSV = '"id","sentiment","review"\n"1_9",1,"A ""great"" film.\nTruly."\n"2_1",0,"Café noir, bof."\n'.encode()


def test_imdb_recipe():
    raw = movie_review_rdata()
    objects = sources.read_rdata(raw)
    assert objects["other"].values == [7] and objects["other"].attributes == {"names": sources.RVector(["seven"], {})}
    built = sources.build_imdb({"movie_review.RData": raw})
    assert built == {"en_sentiment/imdb_text2vec_5k/imdb_movie_review_5k.csv": IMDB_CSV}
    assert data._imdb(list(built.values())) == {"all": (['A "great" film. Truly.', "Café noir, bof."], [1, 0])}
    with pytest.raises(ValueError, match="not an R data file"):
        sources.read_rdata(lzma.compress(b"RDX3\nX\n"))


# ---------------------------------------------------------------------------------- read_raw: rebuild and cache
def with_sha256(monkeypatch, name, content):
    """Registry entry `name` with its (single) file's sha256 replaced by that of `content`."""
    entry = data.REGISTRY[name]
    file = dataclasses.replace(entry.files[0], sha256=sha(content))
    monkeypatch.setitem(data.REGISTRY, name, dataclasses.replace(entry, files=(file,)))


def serve(monkeypatch, pages):
    """Replace the download function: `pages` maps an address to bytes (or an exception to raise)."""
    calls = []

    def download(url, timeout=60):
        calls.append(url)
        page = pages.get(url, urllib.error.URLError("no route to host"))
        if isinstance(page, Exception):
            raise page
        return page

    monkeypatch.setattr(data, "download", download)
    return calls


@pytest.fixture
def no_hub(monkeypatch):
    asked = []

    def from_hub(name, entry, looked):
        asked.append(name)
        looked.append(f"the Hugging Face hub ({entry.hub[0]}): stub")

    monkeypatch.setattr(data, "_from_hub", from_hub)
    return asked


def test_read_raw_rebuilds_checks_and_caches(monkeypatch, tmp_path, no_hub):
    built = SMS_RAW[len(sources.SMS_HEADER):]
    with_sha256(monkeypatch, "sms_spam", built)
    monkeypatch.setitem(sources.SOURCES, "sms_spam",
                        dataclasses.replace(sources.SOURCES["sms_spam"], sha256={"SMSSpamCollection": sha(SMS_RAW)}))
    calls = serve(monkeypatch, {sources.SMS_URL: SMS_RAW})
    expected = {"all": (["See you at noon", "WIN a prize now, txt 80082"], [0, 1])}
    assert data.read_raw("sms_spam") == expected
    assert calls == [sources.SMS_URL] and not no_hub  # the recipe, not the hub
    folder = tmp_path / "cache" / "data" / "sms_spam"
    assert sorted(p.name for p in folder.iterdir()) == ["SMSSpamCollection"]  # no temporary file left
    assert (folder / "SMSSpamCollection").read_bytes() == built
    assert data.read_raw("sms_spam") == expected
    assert calls == [sources.SMS_URL]  # the second time from the download cache


def test_imdb_recipe_comes_before_the_hub(monkeypatch, no_hub):
    with_sha256(monkeypatch, "imdb", IMDB_CSV)
    monkeypatch.setitem(sources.SOURCES, "imdb_text2vec",
                        dataclasses.replace(sources.SOURCES["imdb_text2vec"], sha256={}))
    serve(monkeypatch, {sources.IMDB_URL: movie_review_rdata()})
    assert data.read_raw("imdb")["all"][1] == [1, 0]
    assert not no_hub  # stanfordnlp/imdb is another set of reviews: asked only when the recipe cannot run

    serve(monkeypatch, {})
    with_sha256(monkeypatch, "imdb", b"another version")  # not in the cache: the recipe is tried again, offline
    with pytest.raises(DataError) as err:
        data.read_raw("imdb")
    message = str(err.value)
    assert no_hub == ["imdb"]
    assert (message.index(f"downloading {sources.IMDB_URL} failed: <urlopen error no route to host>")
            < message.index("the Hugging Face hub (stanfordnlp/imdb)"))


def test_one_recipe_caches_every_file_it_builds(monkeypatch, tmp_path):
    """A recipe that builds the files of two entries (MedQuAD) caches both: the second entry needs no download."""
    a, b = b"first corpus line with words enough\n", b"second corpus line with words enough\n"
    toy = sources.Source({"in.txt": "https://example.org/in.txt"}, lambda d: {"toy/a.txt": d["in.txt"],
                                                                            "toy/b.txt": b}, "a test recipe")
    monkeypatch.setitem(sources.SOURCES, "toy", toy)
    for name, content in (("toy_a", a), ("toy_b", b)):
        entry = data.Entry(name, (data.File(f"toy/{name[-1]}.txt", sha(content)),), data._corpus(1), builder="toy")
        monkeypatch.setitem(data.REGISTRY, name, entry)
    calls = serve(monkeypatch, {"https://example.org/in.txt": a})
    assert data.read_raw("toy_a") == {"all": ([a.decode().strip()], None)}
    assert data.read_raw("toy_b") == {"all": ([b.decode().strip()], None)}
    assert calls == ["https://example.org/in.txt"]
    assert (tmp_path / "cache" / "data" / "toy" / "b.txt").read_bytes() == b


def test_rebuilt_file_that_differs_is_an_error(monkeypatch, tmp_path, no_hub):
    monkeypatch.setitem(sources.SOURCES, "sms_spam", dataclasses.replace(sources.SOURCES["sms_spam"], sha256={}))
    serve(monkeypatch, {sources.SMS_URL: SMS_RAW})
    with pytest.raises(DataError) as err:
        data.read_raw("sms_spam")
    message = str(err.value)
    built = SMS_RAW[len(sources.SMS_HEADER):]
    assert "The file sms_spam/SMSSpamCollection rebuilt by mtlib.sources 'sms_spam' differs" in message
    assert data.REGISTRY["sms_spam"].files[0].sha256 in message and sha(built) in message
    assert sources.SMS_URL in message and "MTLIB_DATA_DIR" in message
    assert not (tmp_path / "cache" / "data").exists() and not no_hub  # nothing cached, no fallback


def test_download_that_differs_from_the_pinned_one(monkeypatch, tmp_path):
    serve(monkeypatch, {sources.SMS_URL: SMS_RAW})
    with pytest.raises(DataError) as err:
        data.read_raw("sms_spam")
    message = str(err.value)
    assert f"The download {sources.SMS_URL} is not the file that the recipe mtlib.sources 'sms_spam'" in message
    assert sources.SOURCES["sms_spam"].sha256["SMSSpamCollection"] in message and sha(SMS_RAW) in message
    assert not (tmp_path / "cache" / "data").exists()


def test_download_the_recipe_cannot_read(monkeypatch):
    serve(monkeypatch, {sources.MEDQUAD_TARBALL: b"<html>rate limited</html>"})
    with pytest.raises(DataError, match=r"The recipe mtlib.sources 'medquad' could not read its downloads \("
                                        + re.escape(sources.MEDQUAD_TARBALL) + r"\): ReadError"):
        data.read_raw("medquad_qtype")


def test_every_place_is_listed_when_all_fail(monkeypatch):
    calls = serve(monkeypatch, {})
    with pytest.raises(DataError) as err:
        data.read_raw("legal_text")
    message = str(err.value)
    assert message.startswith("Could not load the data set 'legal_text'")
    assert "  - the mirror: MTLIB_DATA_DIR is not set\n" in message
    first = next(iter(sources.USLM_FILES))
    assert (f"  - a rebuild from public sources (mtlib.sources 'uslm'): downloading {sources.USLM_BASE}/{first} "
            "failed: <urlopen error no route to host>") in message
    assert "has no original address" not in message  # it has a recipe
    assert "Fixes: point MTLIB_DATA_DIR at the offline data mirror" in message
    assert len(calls) == 1  # stops at the first download that fails


def test_mirror_only_entry(monkeypatch):
    monkeypatch.setitem(data.REGISTRY, "mirror_only", data.Entry(
        "held by the mirror alone", (data.File("x/y.txt", "0" * 64),), data._corpus(1)))
    with pytest.raises(DataError, match="x/y.txt has no original address"):
        data.read_raw("mirror_only")


# ------------------------------------------------------------------------------ every chapter's data, reachable
def loaded_by_the_book() -> set[str]:
    """The registered data sets that chapters (and the mtlib functions they call) load.

    A registered name quoted anywhere in a notebook that loads data counts (chapters keep names in dicts such as
    DOMAINS and pass them on); a cell that loops over `data.names()` and loads each one loads them all (chapter 00).
    """
    registered, found = set(data.REGISTRY), set()
    for notebook in sorted((ROOT / "book").glob("*/*.ipynb")):
        cells = ["".join(c["source"]) for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
                 if c["cell_type"] == "code"]
        if not any("load_dataset(" in cell or "read_raw(" in cell for cell in cells):
            continue
        if any("load_dataset(" in cell and "data.names()" in cell for cell in cells):
            found |= registered
        found |= registered & set(re.findall(r"[\"'](\w+)[\"']", "\n".join(cells)))
    for module in (ROOT / "mtlib").rglob("*.py"):
        found |= registered & set(re.findall(r"(?:load_dataset|read_raw)\(\s*[\"'](\w+)[\"']", module.read_text()))
    return found


def test_every_data_set_the_book_loads_has_a_source_outside_the_mirror():
    loaded = loaded_by_the_book()
    assert {"sms_spam", "imdb", "medquad_qtype", "medical_text", "legal_text", "sst2", "trec"} <= loaded
    missing = [name for name in sorted(loaded) if not (
        all(file.url for file in data.REGISTRY[name].files) or data.REGISTRY[name].builder or data.REGISTRY[name].hub)]
    assert not missing, (f"{missing}: loaded by the book but held only by the mirror, so Colab readers cannot load "
                         "them. Give every file a pinned URL, or add a recipe to mtlib.sources and name it in "
                         "Entry.builder, or an equivalent hub data set in Entry.hub.")
    unknown = {name: e.builder for name, e in data.REGISTRY.items() if e.builder and e.builder not in sources.SOURCES}
    assert not unknown, f"registry entries name recipes that mtlib.sources.SOURCES lacks: {unknown}"
