"""Reading the book's notebooks without executing them: shared by the structure tests and scripts/execute.py."""
from __future__ import annotations

import ast
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


def markdown_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "markdown"]


def twin(path: Path) -> Path:
    """The same chapter in the other language: book/en/X.ipynb <-> book/zh/X.ipynb."""
    other = {"en": "zh", "zh": "en"}[path.parent.name]
    return path.parent.parent / other / path.name


def without_comments(source: str) -> str:
    """Code without comments or blank lines, spaces inside a line normalised (indentation kept): translated
    comments compare equal, and code that compares equal runs the same (the Chinese twins are not re-executed)."""
    lines = source.splitlines()
    python = "\n".join("" if l.lstrip().startswith(("!", "%")) else l for l in lines)  # magics are not Python
    try:
        for tok in tokenize.generate_tokens(io.StringIO(python).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        lines = [l.split("#", 1)[0] for l in lines]
    def normalised(line: str) -> str:
        body = line.lstrip()
        return line[:len(line) - len(body)] + re.sub(r"[ \t]+", " ", body.rstrip())
    return "\n".join(normalised(l) for l in lines if l.strip())


def same_code(a, b) -> bool:
    ca, cb = code_cells(a), code_cells(b)
    return len(ca) == len(cb) and all(without_comments(x.source) == without_comments(y.source) for x, y in zip(ca, cb))


# ------------------------------------------------------------------------------------------------ code cells
PYTHON_CELL_MAGICS = ("%%capture", "%%time", "%%timeit")  # cell magics whose body is still Python


def python_ast(source: str) -> ast.Module | None:
    """The AST of a code cell, IPython magics replaced by `pass`; None when the cell is not Python."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        if not lines[0].lstrip().startswith(PYTHON_CELL_MAGICS):
            return None
        lines = lines[1:]
    python = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("!", "%")):
            python.append(line[: len(line) - len(stripped)] + "pass")
        else:
            python.append(line)
    try:
        return ast.parse("\n".join(python))
    except SyntaxError:
        return None


def glued(nb) -> dict:
    """name -> output for every value glued in the stored outputs (myst-nb / mtlib.glue: metadata.scrapbook.name)."""
    found = {}
    for cell in code_cells(nb):
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                found[name] = output
    return found


def glued_data(output) -> dict:
    """The mime bundle of a glued output with the scrapbook prefix taken off (`text/plain`, `image/png`...)."""
    prefix = output.get("metadata", {}).get("scrapbook", {}).get("mime_prefix", "")
    return {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in output.get("data", {}).items()}


# ------------------------------------------------------------------------------------------------ markdown
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}|:{3,})\s*(.*?)\s*$")
NOT_PROSE = {"code", "code-block", "code-cell", "sourcecode", "math", "bibliography", "include", "literalinclude",
             "raw", "image", "csv-table", "list-table", "glue", "glue:any", "glue:figure", "glue:math", "glue:md",
             "mermaid", "graphviz", "tableofcontents"}


def directive(info: str) -> tuple[str, str] | None:
    """`{name} argument` -> (name, argument); None for a plain code fence."""
    m = re.match(r"\{([^}]+)\}\s*(.*)", info)
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def blocks(markdown: str):
    """Split MyST markdown into ("prose", line) and ("fence", info, body) items, in order.

    Code fences (``` or ~~~ without a directive) and non-prose directives become one "fence" item; the bodies of
    prose directives (admonitions, notes, dropdowns, `:::` blocks) are scanned again, without their `:option:` lines.
    """
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            yield ("prose", lines[i])
            i += 1
            continue
        marker, info = m.groups()
        body, i = [], i + 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close.group(1)[0] == marker[0] and len(close.group(1)) >= len(marker) and not close.group(2):
                break
            body.append(lines[i])
            i += 1
        i += 1
        yield ("fence", info, "\n".join(body))
        found = directive(info)
        if found and found[0] not in NOT_PROSE:
            content = body
            while content and re.match(r"^\s*:[\w-]+:", content[0]):
                content = content[1:]
            yield from blocks("\n".join(content))


def prose(markdown: str) -> str:
    """The markdown text outside code fences and non-prose directives."""
    return "\n".join(item[1] for item in blocks(markdown) if item[0] == "prose")


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, text) of the ATX headings (`## Title`) outside code fences."""
    found = []
    for line in prose(markdown).splitlines():
        m = re.match(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            found.append((len(m.group(1)), m.group(2).strip()))
    return found


def without_code_spans(text: str) -> str:
    """Inline code spans removed, MyST roles ({role}`content`) kept."""
    pattern = re.compile(r"(\{[^{}`\s]+\}`[^`]*`)|(`+)[\s\S]*?(?<!`)\2(?!`)")
    return pattern.sub(lambda m: m.group(1) or " ", text)


def roles(markdown: str, name: str) -> list[tuple[str, str]]:
    """(role, content) of the MyST roles {name}`...` and {name:xyz}`...` in the prose: roles(md, "glue")."""
    text = without_code_spans(prose(markdown))
    return [m.groups() for m in re.finditer(r"\{(%s(?::[\w-]+)?)\}`([^`]*)`" % re.escape(name), text)]


def glue_references(text: str) -> list[tuple[str, str, str]]:
    """(role or directive, name, format spec) of every glue reference in markdown text."""
    found = []
    for role, content in roles(text, "glue"):
        key, spec = content, ""
        if role in ("glue:text", "glue:md") and ":" in content and "::" not in content:
            key, spec = content.rsplit(":", 1)  # myst-nb's own split: key:format
        found.append((role, key.strip(), spec.strip()))
    for item in blocks(text):
        d = item[0] == "fence" and directive(item[1])
        if d and d[0].split(":")[0] == "glue":
            found.append((d[0], d[1].split()[0] if d[1] else "", ""))
    return found
