"""Public sources for the data sets that the offline mirror holds in a derived form, and the recipes that rebuild them.

Most files of the mirror are copies of a file with a pinned address, which `mtlib.data` downloads as they are. Five
are not: they were derived from public data (a restored copy, a converted R file, text extracted from XML). Each
`Source` below names the pinned downloads and a builder, a function that takes the downloaded bytes (by name) and
returns {mirror path: bytes}. `mtlib.data` runs it where there is no mirror (Colab) and checks every built file
against the registry's sha256, so a rebuild gives exactly the mirror's bytes or a clear error. Standard library only.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import lzma
import re
import struct
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable

GH = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class Source:
    """Pinned public downloads and the recipe that turns them into files of the book's data mirror."""

    urls: dict[str, str]  # download name -> pinned address
    build: Callable[[dict[str, bytes]], dict[str, bytes]]  # downloads by name -> {mirror path: bytes}
    credit: str  # where the data come from, and their licence
    sha256: dict[str, str] = field(default_factory=dict)  # download name -> sha256, for downloads of stable bytes


# ------------------------------------------------------------------------------------------------------- MedQuAD
MEDQUAD_COMMIT = "577bd37b96c02d1833b2c9eed2de9f96964e96cb"
MEDQUAD_TARBALL = f"https://codeload.github.com/abachaa/MedQuAD/tar.gz/{MEDQUAD_COMMIT}"  # about 7.3 MB
MEDQUAD_SUBSETS = ("1_CancerGov_QA", "2_GARD_QA", "3_GHR_QA", "4_MPlus_Health_Topics_QA", "5_NIDDK_QA", "6_NINDS_QA",
                   "7_SeniorHealth_QA", "8_NHLBI_QA_XML", "9_CDC_QA")  # 10-12 had their answers removed (copyright)
MEDQUAD_QTYPES = ("information", "symptoms", "treatment", "frequency", "genetic changes", "inheritance", "causes",
                  "exams and tests", "outlook", "prevention")
LEADING_QUESTION = re.compile(
    r"^(?:What|How|Why|When|Where|Who|Which|Is|Are|Can|Could|Does|Do|Should|Will|Would)\b[^?]{0,200}\?\s*")
MIN_CHARS, CUT, N_UNLABELLED = 40, 2000, 3000


def _medquad_documents(tarball: bytes):
    """(subset, parsed XML document) for every file of subsets 1-9 in the GitHub tarball, in sorted order."""
    found = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")  # MedQuAD-<commit>/<subset>/<file>.xml
            if member.isfile() and len(parts) == 3 and parts[1] in MEDQUAD_SUBSETS and parts[2].endswith(".xml"):
                found[parts[1], parts[2]] = tar.extractfile(member).read()
    if not found:
        raise ValueError(f"the MedQuAD tarball holds none of the subsets {', '.join(MEDQUAD_SUBSETS)}")
    for subset, name in sorted(found):
        yield subset, ET.fromstring(found[subset, name])


def _without_question(answer: str) -> str:
    return LEADING_QUESTION.sub("", answer, count=1)


def medquad_bucket(focus: str) -> int:
    """0-5: unlabelled text, 6-7: train, 8: validation, 9: test (a disease's answers all land in one bucket)."""
    return int(hashlib.sha1(focus.lower().encode("utf-8")).hexdigest(), 16) % 10


def build_medquad(downloads: dict[str, bytes]) -> dict[str, bytes]:
    """medquad_qtype.jsonl and medquad_unlabelled_answers.txt from the MedQuAD repository's tarball.

    Recipe: a row per <QAPair> of subsets 1-9 (folders and files sorted, pairs in document order); its text is the
    answer with whitespace runs made one space and ONE leading question removed (LEADING_QUESTION: only questions
    that start with those words); texts under 40 characters are dropped, and repeated texts within a subset (the
    first is kept). The focus (disease) picks the bucket (`medquad_bucket`). Labelled rows (buckets 6-9, the 10
    question types) keep the answer cut at 2,000 characters *before* the question is removed, sorted by (split,
    focus, question type); the unlabelled file holds 3,000 distinct texts of buckets 0-5, uncut, sorted by sha1.

    MedQuAD: Ben Abacha & Demner-Fushman, "A question-entailment approach to question answering", BMC
    Bioinformatics 2019; licence CC BY 4.0. The text was changed: normalised, shortened, filtered and split.
    """
    rows, seen = [], set()
    for subset, doc in _medquad_documents(downloads["medquad.tar.gz"]):
        focus = doc.findtext("Focus")
        for pair in doc.iter("QAPair"):
            answer = " ".join((pair.findtext("Answer") or "").split())
            text = _without_question(answer)
            if len(text) < MIN_CHARS or (subset, text) in seen:
                continue
            seen.add((subset, text))
            question = pair.find("Question")
            rows.append(dict(subset=subset, focus=focus, qtype=question.get("qtype"), question=question.text,
                             answer=answer, text=text, bucket=medquad_bucket(focus)))
    split_of = {6: "train", 7: "train", 8: "validation", 9: "test"}
    labelled = [dict(split=split_of[r["bucket"]], qtype=r["qtype"], focus=r["focus"], source=r["subset"],
                     question=r["question"], answer=_without_question(r["answer"][:CUT]))
                for r in rows if r["bucket"] >= 6 and r["qtype"] in MEDQUAD_QTYPES]
    labelled.sort(key=lambda r: (r["split"], r["focus"], r["qtype"]))
    pool = {r["text"] for r in rows if r["bucket"] <= 5}
    unlabelled = sorted(pool, key=lambda t: hashlib.sha1(t.encode("utf-8")).hexdigest())[:N_UNLABELLED]
    return {"medquad/medquad_qtype.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                   for r in labelled).encode("utf-8"),
            "medquad/medquad_unlabelled_answers.txt": "".join(t + "\n" for t in unlabelled).encode("utf-8")}


# --------------------------------------------------------------------------------------------------------- USLM
USLM_COMMIT = "100338992150c276aae5544d01d9b821a27eb383"
USLM_BASE = f"{GH}/usgpo/uslm/{USLM_COMMIT}/previous/sample-files"
USLM_FILES = {  # in the order of the book's file: name -> sha256 at USLM_COMMIT
    "113publ121-uslm.xml": "9d0cfaa1e65e7b3e6ccb7701740da94cbe3f0a9c40cc55024df30c441da2721c",
    "113publ287-uslm.xml": "a8fac3cdb1ad95f09285669fbc28b911c2d62757d92b77c589f12ea3e3d4a7b0",
    "113publ67-uslm.xml": "d8f62b3ac15eb4d9a359be193f781730eb412fcfba8855cb30fb4270b873e50e",
    "114publ190-uslm.xml": "4ea3efb7977bfdbb0faafde64181e42a55a63f740c628572b13ba5ebbb127a49",
    "114publ4-uslm.xml": "8f596c603d11cae06eaf45ab02f71c9315e234e861974b600a66092898dd162c",
    "CFR-2018-title27-vol3-uslm.xml": "48ee6e25d789a8a410fdfc30b3e741edbdadb76f7ae2a1038f72b5e00b32400b",
    "FR-2018-05-10-uslm.xml": "255d5aaa3fd44ee6ef5ac0aaf1d3e626da10465249c786db738154d6cffaee8c",
}
USLM_INLINE = {"ref", "inline", "b", "i", "sup", "sub", "shortTitle", "quotedText", "term", "date", "page", "span",
               "target", "br", "docNumber", "type", "congress", "committee", "entity", "organization", "property",
               "del", "ins", "footnoteRef", "ear", "amendingAction", "td", "th", "proviso", "headingText",
               "startingPage", "coverTitle"}  # elements that do not end a line
LABEL_LINE = re.compile(r"[“\"]?\(\w{1,6}\)|\w{1,6}(?:\.\w{1,6})?\.?|(?:Sec\.|SEC\.|SECTION) \d+\w*\.|"
                        r"(?:TITLE|PART|Subpart) \w+—")  # "(a)", "447.11", "Sec. 2.", "TITLE I—": joined to the next


def _uslm_lines(xml_bytes: bytes) -> list[str]:
    parts = []

    def walk(element):
        tag = element.tag.split("}")[-1]
        if tag == "meta":
            return
        parts.append(element.text or "")
        for child in element:
            walk(child)
            parts.append(child.tail or "")
        parts.append(" " if tag == "num" else "" if tag in USLM_INLINE else "\n")

    walk(ET.fromstring(xml_bytes))
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line.replace("\xad", "")).strip() for line in "".join(parts).split("\n")]
    lines = [line for line in lines if line]
    out, i = [], 0
    while i < len(lines):
        line, i = lines[i], i + 1
        while LABEL_LINE.fullmatch(line) and i < len(lines):
            line, i = line + " " + lines[i], i + 1
        out.append(line)
    return out


def build_legal(downloads: dict[str, bytes]) -> dict[str, bytes]:
    """us_law_sample.txt: the plain text of the 7 USLM sample files (public laws, CFR Title 27, a Federal Register).

    Recipe per file: the XML's text and tails in document order, <meta> skipped (processing instructions and
    comments are dropped by the parser), the source's own newlines kept; a space after each <num>, a newline after
    each element that is not inline (USLM_INLINE). Per line: soft hyphens dropped, runs of ASCII blanks made one
    space, ends stripped (Unicode spaces inside a line are kept), empty lines dropped; a line that is only a label
    (LABEL_LINE) is joined to the next, repeatedly. Lines joined by newlines, files (in USLM_FILES order) by a blank
    line, a final newline, UTF-8.

    Source: the US Government Publishing Office's USLM repository; public domain (17 U.S.C. 105) with a CC0 1.0
    waiver. The book's file is a plain-text extract.
    """
    documents = ["\n".join(_uslm_lines(downloads[name])) for name in USLM_FILES]
    return {"domain_text/legal/us_law_sample.txt": ("\n\n".join(documents) + "\n").encode("utf-8")}


# ----------------------------------------------------------------------------------------------------- SMS spam
SMS_URL = f"{GH}/hamzaaacodes/sms-spam-collection/f3e73e1e74e6330b62d1ee1983bba2a063184c26/SMSSpamCollection"
SMS_HEADER = b"Label\tSMS\n"


def build_sms(downloads: dict[str, bytes]) -> dict[str, bytes]:
    """SMSSpamCollection: a copy of the original file on GitHub, minus the header line "Label<TAB>SMS" it added.

    SMS Spam Collection v.1: Almeida & Gómez Hidalgo, DocEng 2011; UCI lists it as CC BY 4.0.
    """
    raw = downloads["SMSSpamCollection"]
    if not raw.startswith(SMS_HEADER):
        raise ValueError(f"the SMS Spam Collection download starts with {raw[:20]!r}, not the header {SMS_HEADER!r}")
    return {"sms_spam/SMSSpamCollection": raw[len(SMS_HEADER):]}


# --------------------------------------------------------------------------------------------------------- IMDB
IMDB_URL = f"{GH}/dselivanov/text2vec/0b31bdd81f37baaf0bd2c8113cbaa578450c8730/data/movie_review.RData"
R_NULLS = {254, 253, 242, 247, 251, 241, 252}  # NULL, the global/empty/base environments, missing, unbound


@dataclass
class RVector:
    values: list
    attributes: dict


class _RReader:
    """R's XDR serialisation (format 2), as far as a data frame of strings and numbers needs it."""

    def __init__(self, raw: bytes):
        self.raw, self.pos, self.symbols = raw, 0, []

    def int(self) -> int:
        (value,) = struct.unpack_from(">i", self.raw, self.pos)
        self.pos += 4
        return value

    def item(self):
        flags = self.int()
        kind, has_attributes, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in R_NULLS:
            return None
        if kind == 255:  # a reference to a symbol read before
            return self.symbols[(flags >> 8) - 1]
        if kind == 1:  # a symbol: its name
            self.symbols.append(self.item())
            return self.symbols[-1]
        if kind in (2, 6):  # a pairlist (or call): [(tag, value), ...]
            if has_attributes:
                self.item()
            tag = self.item() if has_tag else None
            value, rest = self.item(), self.item()
            return [(tag, value)] + (rest or [])
        if kind == 9:  # a string
            n = self.int()
            if n == -1:
                return None  # NA
            text, self.pos = self.raw[self.pos:self.pos + n], self.pos + n
            return text.decode("latin-1" if (flags >> 12) & 4 else "utf-8")
        if kind in (10, 13, 14):  # logical, integer, double vectors
            n, fmt = self.int(), ">d" if kind == 14 else ">i"
            size = n * struct.calcsize(fmt)
            values = [v for (v,) in struct.iter_unpack(fmt, self.raw[self.pos:self.pos + size])]
            self.pos += size
        elif kind in (16, 19):  # character vectors, lists
            values = [self.item() for _ in range(self.int())]
        else:
            raise ValueError(f"unsupported R type {kind} at byte {self.pos} of the R data file")
        return RVector(values, dict(self.item()) if has_attributes else {})


def read_rdata(raw: bytes) -> dict:
    """The objects of an xz-compressed .RData file (R's XDR format 2): name -> value."""
    data = lzma.decompress(raw)
    if not data.startswith(b"RDX2\nX\n"):
        raise ValueError(f"not an R data file in XDR format 2 (it starts with {data[:8]!r})")
    reader = _RReader(data[7:])
    version, _writer, _min_reader = reader.int(), reader.int(), reader.int()
    if version != 2:
        raise ValueError(f"R serialisation format {version}; the reader knows format 2")
    return dict(reader.item())


def build_imdb(downloads: dict[str, bytes]) -> dict[str, bytes]:
    """imdb_movie_review_5k.csv: text2vec's `movie_review` data frame (id, sentiment, review) written as CSV.

    Recipe: read the R data file without R; one row per review, a header row of the column names, strings quoted
    (quotes doubled), numbers bare, "\\n" line ends, UTF-8.

    Source: 5,000 IMDB reviews (Maas et al. 2011; no explicit licence) as shipped in the text2vec R package
    (dselivanov/text2vec, GPL-2 | MIT).
    """
    frame = read_rdata(downloads["movie_review.RData"])["movie_review"]
    names = frame.attributes["names"].values
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow(names)
    writer.writerows(zip(*(column.values for column in frame.values)))
    return {"en_sentiment/imdb_text2vec_5k/imdb_movie_review_5k.csv": out.getvalue().encode("utf-8")}


# ------------------------------------------------------------------------------------------------------ registry
SOURCES: dict[str, Source] = {
    "medquad": Source(
        {"medquad.tar.gz": MEDQUAD_TARBALL}, build_medquad,
        "MedQuAD (Ben Abacha & Demner-Fushman 2019), abachaa/MedQuAD, CC BY 4.0; the text was changed"),
    "uslm": Source(
        {name: f"{USLM_BASE}/{name}" for name in USLM_FILES}, build_legal,
        "US GPO USLM sample files (usgpo/uslm), public domain and CC0 1.0", sha256=dict(USLM_FILES)),
    "sms_spam": Source(
        {"SMSSpamCollection": SMS_URL}, build_sms,
        "SMS Spam Collection v.1 (Almeida & Gómez Hidalgo 2011), CC BY 4.0",
        sha256={"SMSSpamCollection": "fae7ea7d915ef73903e5c2f46ffa2f4a39909a574e20fda4f2b81f7cb1e15e1f"}),
    "imdb_text2vec": Source(
        {"movie_review.RData": IMDB_URL}, build_imdb,
        "IMDB reviews (Maas et al. 2011) from the text2vec R package",
        sha256={"movie_review.RData": "bc0b35a3786d5fee485ed9aa4da1165a13f398c3c1d230f588fb6150d498d221"}),
}
