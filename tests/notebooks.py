"""Reading the book's notebooks without executing them: shared by the structure tests and scripts/execute.py."""
from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LANGS = ("en", "zh")


def chapters(lang: str) -> list[Path]:
    return sorted((ROOT / "book" / lang).glob("*.ipynb"))


def read(path: Path):
    return nbformat.read(path, as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def without_comments(source: str) -> str:
    """Code without comments or blank lines, whitespace normalised: translated comments compare equal."""
    lines = source.splitlines()
    python = "\n".join("" if l.lstrip().startswith(("!", "%")) else l for l in lines)  # magics are not Python
    try:
        for tok in tokenize.generate_tokens(io.StringIO(python).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        lines = [l.split("#", 1)[0] for l in lines]
    return re.sub(r"[ \t]+", " ", "\n".join(l.rstrip() for l in lines if l.strip())).strip()


def same_code(a, b) -> bool:
    ca, cb = code_cells(a), code_cells(b)
    return len(ca) == len(cb) and all(without_comments(x.source) == without_comments(y.source) for x, y in zip(ca, cb))
