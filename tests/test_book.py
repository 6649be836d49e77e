"""The book's structure, read from the files (nothing is executed; a few seconds in all).

Per chapter notebook (test ids like `en/02-first-fine-tune`): its twin in the other language with the same code,
its place in _toc.yml, clean stored outputs of one top-to-bottom run, the first cells (title, Colab badge, twin
link, setup), the closing sections (Check with asserts, Pitfalls, Exercises, References), glued numbers that exist,
Chinese prose in the Chinese notebooks, and functions written out in a chapter that are the very code mtlib runs.
With no chapter yet the parametrised tests collect as empty (skipped) and the book-wide ones still run.
"""
from __future__ import annotations

import ast
import difflib
import functools
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from notebooks import (LANGS, ROOT, blocks, chapters, code_cells, directive, glue_references, glued,  # noqa: E402
                       glued_data, headings, markdown_cells, prose, python_ast, read, roles, twin,
                       without_code_spans, without_comments)

REPO_URL = "https://colab.research.google.com/github/model-migration/model-migration-book/blob/main"
NOTEBOOKS = [p for lang in LANGS for p in chapters(lang)]
NAMES = sorted({p.stem for p in NOTEBOOKS})
PAIRS = [n for n in NAMES if all((ROOT / "book" / lang / f"{n}.ipynb").exists() for lang in LANGS)]
ZH_NOTEBOOKS = [p for p in NOTEBOOKS if p.parent.name == "zh"]
PART = {"en": "English", "zh": "中文"}
# The closing sections, as headings (or admonition titles) in each language; matched at the start of the title,
# after any section number ("## 5. Check" or "## 检查").
SECTIONS = {
    "en": {"Check": r"checks?\b", "Pitfalls": r"(common )?pitfalls\b", "Exercises": r"exercises?\b",
           "References": r"references\b"},
    "zh": {"检查": r"检查(?!点)", "常见陷阱": r"(常见)?陷阱", "练习": r"练习", "参考文献": r"参考文献"},
}
# Han characters / (Han characters + Latin letters) in a Chinese notebook's prose. An English word is ~5 letters and
# says what ~1.7 Han characters say: Chinese prose dense with model names scores 0.4 or more, a notebook left half in
# English about 0.25. A paragraph of that many Latin letters and no Han character at all is left untranslated.
MIN_CHINESE_SHARE = 0.3
ENGLISH_PARAGRAPH = 150
STATIC_MIME = ("image/png", "image/svg+xml", "image/jpeg", "image/gif", "text/html")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
GLUE_KINDS = ("glue", "glue:any", "glue:text", "glue:md", "glue:figure", "glue:math")  # myst-nb 1.x


def nid(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@functools.lru_cache(maxsize=None)
def notebook(path: Path):
    return read(path)


def lang_of(path: Path) -> str:
    return path.parent.name


def markdown(nb) -> str:
    return "\n\n".join(c.source for c in markdown_cells(nb))


def section_titles(nb) -> list[tuple[int, int, str]]:
    """(cell index, level, title) of every heading and admonition title in the markdown cells."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        found += [(i, level, text) for level, text in headings(cell.source)]
        for item in blocks(cell.source):
            d = item[0] == "fence" and directive(item[1])
            if d and d[0] == "admonition" and d[1]:
                found.append((i, 7, d[1]))
    return found


def normalise_title(title: str) -> str:
    title = re.sub(r"^\s*(\d+(\.\d+)*\.?|[一二三四五六七八九十]+、)\s*", "", title)  # "5.", "2.3", "五、"
    return title.strip().lower()


def find_section(nb, lang: str, key: str):
    """(cell index, level, title) of the section `key`; the last match, as the closing sections end a chapter."""
    pattern = re.compile(SECTIONS[lang][key])
    return next((found for found in reversed(section_titles(nb)) if pattern.match(normalise_title(found[2]))), None)


# ------------------------------------------------------------------------------------------------- twins
@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_file_name(path):
    assert re.fullmatch(r"\d\d-[a-z0-9]+(-[a-z0-9]+)*", path.stem), \
        f"{nid(path)}: chapter files are named NN-slug.ipynb (two digits, lowercase words joined by '-')."


@pytest.mark.parametrize("name", NAMES)
def test_twin_exists(name):
    missing = [f"book/{lang}/{name}.ipynb" for lang in LANGS if not (ROOT / "book" / lang / f"{name}.ipynb").exists()]
    assert not missing, f"{name}: every chapter exists in both languages; missing {', '.join(missing)}."


@pytest.mark.parametrize("name", PAIRS)
def test_same_code(name):
    en, zh = (notebook(ROOT / "book" / lang / f"{name}.ipynb") for lang in LANGS)
    ce, cz = code_cells(en), code_cells(zh)
    assert len(ce) == len(cz), f"{name}: {len(ce)} code cells in EN, {len(cz)} in ZH; the code must be the same."
    for k, (a, b) in enumerate(zip(ce, cz), 1):
        x, y = without_comments(a.source), without_comments(b.source)
        if x != y:
            diff = "\n".join(difflib.unified_diff(x.splitlines(), y.splitlines(), "en", "zh", lineterm=""))
            pytest.fail(f"{name}: code cell {k} differs between EN and ZH (comments aside; only comments may be "
                        f"translated):\n{diff}")


def test_same_code_comparison():
    """The comparison that stands in for running the Chinese twins: comments may differ, behaviour may not."""
    en = "for x in xs:  # each one\n    y = f(x,  1)\n    print(y)\n"
    assert without_comments(en) == without_comments("for x in xs:  # 逐个\n    y = f(x, 1)\n\n    print(y)\n")
    assert without_comments(en) != without_comments("for x in xs:\n    y = f(x, 1)\nprint(y)\n")  # dedented
    assert without_comments(en) != without_comments("for x in xs:\n    y = f(x, 2)\n    print(y)\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_valid_notebook(path):
    nb = notebook(path)
    nbformat.validate(nb)
    kernel = nb.metadata.get("kernelspec", {})
    assert kernel.get("name") == "python3" and kernel.get("language") == "python", \
        f"{nid(path)}: notebook metadata needs kernelspec name python3, language python (found {kernel})."
    lexer = nb.metadata.get("language_info", {}).get("pygments_lexer")
    assert lexer == "ipython3", (
        f"{nid(path)}: metadata.language_info.pygments_lexer is {lexer!r}, not 'ipython3' (an executed notebook "
        "stores it). Without it the website highlights the code as plain Python, the setup cell's `!pip` line "
        "fails to lex and `make book` (-W) stops on the warning.")


# ------------------------------------------------------------------------------------------------- the toc
def toc():
    return yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))


def toc_files(entries) -> list[str]:
    """The `file:` entries of a list of toc entries, sections included, in order."""
    files = []
    for entry in entries or []:
        if "file" in entry:
            files.append(re.sub(r"\.(ipynb|md)$", "", entry["file"]))
        files += toc_files(entry.get("sections"))
    return files


def toc_parts() -> dict[str, list[str]]:
    return {part.get("caption"): toc_files(part.get("chapters")) for part in toc().get("parts", [])}


def all_toc_files() -> list[str]:
    try:
        data = toc()
        return [data["root"]] + [f for files in toc_parts().values() for f in files]
    except Exception:  # a broken _toc.yml fails test_toc_parts with its own message
        return []


def test_toc_parts():
    data = toc()
    assert data.get("format") == "jb-book", "_toc.yml: format jb-book (one book with parts)."
    captions = [part.get("caption") for part in data.get("parts", [])]
    assert PART["en"] in captions and PART["zh"] in captions, \
        f"_toc.yml needs a part captioned {PART['en']!r} and one captioned {PART['zh']!r}; found {captions}."
    assert captions.index(PART["en"]) < captions.index(PART["zh"]), "_toc.yml: the English part comes first."


def test_toc_same_chapter_order():
    parts = toc_parts()
    names = {}
    for lang in LANGS:
        files = parts.get(PART[lang], [])
        stray = [f for f in files if not f.startswith(f"book/{lang}/")]
        assert not stray, f"_toc.yml: the {PART[lang]} part lists files outside book/{lang}/: {stray}."
        names[lang] = [f.split("/", 2)[2] for f in files]
    assert names["en"] == names["zh"], (f"_toc.yml: the two parts list the chapters in different orders:\n"
                                        f"  English: {names['en']}\n  中文:    {names['zh']}")


@pytest.mark.parametrize("entry", all_toc_files())
def test_toc_file_exists(entry):
    assert any((ROOT / f"{entry}{ext}").exists() for ext in (".ipynb", ".md")), \
        f"_toc.yml lists {entry}, but neither {entry}.ipynb nor {entry}.md exists."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_listed_in_toc(path):
    entry = f"book/{lang_of(path)}/{path.stem}"
    assert entry in toc_parts().get(PART[lang_of(path)], []), \
        f"{nid(path)}: add `- file: {entry}` to the {PART[lang_of(path)]} part of _toc.yml (same place in both parts)."


# ------------------------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_stored_outputs(path):
    """Outputs of one top-to-bottom run in a fresh kernel, without errors, tracebacks or widget-only views."""
    problems, counts, unrun = [], [], []
    for k, cell in enumerate(code_cells(notebook(path)), 1):
        if not cell.source.strip():
            continue
        if cell.execution_count is None:
            unrun.append(k)
        counts.append(cell.execution_count)
        static = any(set(o.get("data", {})) & set(STATIC_MIME) and WIDGET_MIME not in o.get("data", {})
                     for o in cell.outputs)
        for o in cell.outputs:
            if o.output_type == "error":
                problems.append(f"code cell {k} stores an error: {o.get('ename')}: {o.get('evalue')}")
            elif o.output_type == "stream" and o.name == "stderr":
                if "Traceback" in o.text:
                    problems.append(f"code cell {k} prints a traceback on stderr")
                if re.search(r"\d+%\|", o.text):
                    problems.append(f"code cell {k} stores a text progress bar on stderr")
            elif re.search(r" at 0x[0-9a-f]{6,}>", "".join(o.get("data", {}).get("text/plain", ""))):
                problems.append(f"code cell {k} stores an object's address ({''.join(o.data['text/plain'])[:60]}), "
                                "which changes with every run: scripts/execute.py drops such fallbacks")
            elif WIDGET_MIME in o.get("data", {}) and not static:
                problems.append(f"code cell {k} shows an ipywidget ({', '.join(o.data)}) without a static fallback "
                                "(an image or HTML output of its own in the same cell; the website cannot render "
                                "widgets, whose state is not stored)")
    if unrun:
        problems.insert(0, f"code cell(s) {', '.join(map(str, unrun))} of {len(counts)} have no stored outputs "
                           f"(empty execution_count): run `make execute NOTEBOOKS={path.stem}`")
    if counts and None not in counts and counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts are {counts}, not 1..{len(counts)}: store the outputs of one "
                        "top-to-bottom run in a fresh kernel (`make execute NOTEBOOKS=...`)")
    assert not problems, f"{nid(path)}:\n  " + "\n  ".join(problems)


def ends_with_glue(source: str) -> bool:
    """Whether a code cell's last statement is a bare `mtlib.glue(...)` call: glue returns its value, which Jupyter
    then shows as the cell's Out."""
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    last = body[-1] if body else None
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and getattr(last.value.func, "attr", None) == "glue")


def test_ends_with_glue():
    assert ends_with_glue('x = 1\nmtlib.glue("a", x)')
    assert not ends_with_glue('for k in "ab":\n    mtlib.glue(k, 1)')
    assert not ends_with_glue('mtlib.glue("a", 1)\nprint(1)')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_no_glued_value_as_out(path):
    """No code cell ends with a bare glue call, whose value would show as a stray Out (English text in the Chinese
    twin, for a clause glued in both languages)."""
    bad = [k for k, cell in enumerate(code_cells(notebook(path)), 1) if ends_with_glue(cell.source)]
    assert not bad, (f"{nid(path)}: code cell(s) {bad} end with a bare mtlib.glue(...) call, whose value shows as the "
                     "cell's Out: glue in a loop, or end the cell with another statement.")


# ------------------------------------------------------------------------------------------------- first cells
def links(markdown_text: str) -> list[str]:
    return re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", markdown_text)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_first_cell(path):
    """Title, Colab badge to this very notebook, link to the twin chapter."""
    nb, lang, name = notebook(path), lang_of(path), path.stem
    assert nb.cells and nb.cells[0].cell_type == "markdown", f"{nid(path)}: the first cell is markdown (the title)."
    first, problems = nb.cells[0].source, []
    titles = [t for level, t in headings(first) if level == 1]
    if not titles:
        problems.append("the first cell starts with the title, `# N. Title`")
    all_h1 = [t for c in markdown_cells(nb) for level, t in headings(c.source) if level == 1]
    if len(all_h1) > 1:
        problems.append(f"one `# ` title per notebook (the rest are `##` sections); found {all_h1}")
    number = re.match(r"(\d+)\.\s", titles[0]) if titles else None
    if number and name[:2].isdigit() and int(number.group(1)) != int(name[:2]):
        problems.append(f"the title's number {number.group(1)} is not the chapter's ({name[:2]})")
    if number and twin(path).exists():
        other = [t for level, t in headings(notebook(twin(path)).cells[0].source) if level == 1]
        if not (other and other[0].startswith(number.group(0))):
            problems.append(f"the two languages number the chapter differently: {titles[0]!r} vs {other[:1]}")

    colab = f"{REPO_URL}/book/{lang}/{name}.ipynb"
    badge = re.search(r"\[!\[[^\]]*\]\(([^)]*colab-badge[^)]*)\)\]\(\s*([^)\s]+)\s*\)", first)
    if not badge:
        problems.append(f"no Colab badge: [![Open In Colab](../_static/colab-badge.svg)]({colab})")
    elif badge.group(1) != "../_static/colab-badge.svg":
        problems.append(f"the Colab badge's image is {badge.group(1)}: use the site's own copy, "
                        "../_static/colab-badge.svg, so that the page needs no other host")
    elif badge.group(2) != colab:
        problems.append(f"the Colab badge links to {badge.group(2)}, expected {colab}")
    wrong = [u for u in links(first) if "colab.research.google.com/github" in u and u != colab
             and not (badge and u == badge.group(2))]
    if wrong:
        problems.append(f"Colab links to other notebooks: {wrong}")

    other_lang = {"en": "zh", "zh": "en"}[lang]
    target = f"../{other_lang}/{name}.ipynb"
    if target not in links(first):
        problems.append(f"no link to the twin chapter: [{'中文版' if lang == 'en' else 'English version'}]({target})")
    assert not problems, f"{nid(path)}, first cell:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_setup_cell(path):
    cells = notebook(path).cells
    assert len(cells) > 1 and cells[1].cell_type == "code", f"{nid(path)}: the second cell is the setup code cell."
    tree = python_ast(cells[1].source)
    assert tree is not None, f"{nid(path)}: the setup cell is not Python:\n{cells[1].source}"
    imports = any(isinstance(n, ast.Import) and any(a.name == "mtlib" for a in n.names) for n in ast.walk(tree))
    calls = any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "setup"
                and isinstance(n.func.value, ast.Name) and n.func.value.id == "mtlib" for n in ast.walk(tree))
    assert imports and calls, \
        f"{nid(path)}: the second cell imports mtlib and calls `cfg = mtlib.setup()`:\n{cells[1].source}"


# ------------------------------------------------------------------------------------------------- sections
@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_closing_sections(path):
    nb, lang = notebook(path), lang_of(path)
    missing = [key for key in SECTIONS[lang] if find_section(nb, lang, key) is None]
    found = [t for _, _, t in section_titles(nb)]
    assert not missing, (f"{nid(path)}: missing section heading(s) {missing} (the {PART[lang]} notebooks use "
                         f"{list(SECTIONS[lang])}); its headings are {found}.")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_check_cell_asserts(path):
    nb, lang = notebook(path), lang_of(path)
    key = next(iter(SECTIONS[lang]))
    where = find_section(nb, lang, key)
    assert where is not None, f"{nid(path)}: no {key!r} section."
    start, level, heading = where
    own = headings(nb.cells[start].source)
    after = own[next((j for j, (_, t) in enumerate(own) if t == heading), len(own)) + 1:]
    cells = []
    for cell in [] if any(l <= level for l, _ in after) else nb.cells[start + 1:]:
        if cell.cell_type == "markdown" and any(l <= level for l, _ in headings(cell.source)):
            break
        if cell.cell_type == "code":
            cells.append(cell)
    asserts = [n for c in cells for n in ast.walk(python_ast(c.source) or ast.Module(body=[], type_ignores=[]))
               if isinstance(n, ast.Assert)]
    assert asserts, f"{nid(path)}: the {key!r} section has no code cell with `assert` statements."
    assert not all(isinstance(a.test, ast.Constant) for a in asserts), \
        f"{nid(path)}: the {key!r} section only asserts constants; assert the chapter's claims."


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", (ROOT / "book" / "references.bib").read_text("utf-8")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_references(path):
    """Every {cite} key is in book/references.bib, and the chapter ends with its filtered bibliography."""
    text = markdown(notebook(path))
    keys = {k.strip() for _, content in roles(text, "cite") for k in content.split(",") if k.strip()}
    unknown = sorted(keys - bib_keys())
    assert not unknown, f"{nid(path)}: cited keys missing from book/references.bib: {unknown}."
    bibliographies = [body for item in blocks(text) if item[0] == "fence"
                      for d in [directive(item[1])] if d and d[0] == "bibliography" for body in [item[2]]]
    assert any(re.search(r":filter:\s*docname in docnames", b) for b in bibliographies), \
        f"{nid(path)}: end the references with ```{{bibliography}}\\n:filter: docname in docnames\\n```."


# ------------------------------------------------------------------------------------------------- glue
@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_glue_references(path):
    nb = notebook(path)
    values = glued(nb)
    references = glue_references(markdown(nb))
    if references and not values:
        pytest.fail(f"{nid(path)}: the prose quotes {len(references)} glued value(s) but nothing is glued in the "
                    f"stored outputs: run `make execute NOTEBOOKS={path.stem}` (or glue with mtlib.glue).")
    problems = []
    for role, key, spec in references:
        if role not in GLUE_KINDS:
            problems.append(f"{{{role}}} is not one of myst-nb's glue roles or directives ({', '.join(GLUE_KINDS)})")
        elif "::" in key:
            problems.append(f"{{{role}}}`{key}` glues from another document: glue it in this chapter")
        elif key not in values:
            problems.append(f"{{{role}}}`{key}` is not glued in the stored outputs (glued: {sorted(values)})")
        elif role == "glue:text":
            data = glued_data(values[key])
            if "text/plain" not in data:
                problems.append(f"{{glue:text}}`{key}`: the glued value has no text/plain")
            elif spec:
                try:
                    from myst_nb.core.variables import format_plain_text
                    format_plain_text(data["text/plain"], spec)
                except ImportError:
                    pass
                except Exception as err:  # what the website build would warn about
                    problems.append(f"{{glue:text}}`{key}:{spec}` cannot format {data['text/plain']!r}: {err}")
    assert not problems, f"{nid(path)}:\n  " + "\n  ".join(dict.fromkeys(problems))


@pytest.mark.parametrize("name", PAIRS)
def test_twins_quote_the_same_numbers(name):
    """Both languages quote the same glued values (a number typed by hand, or dropped, shows up here). A glued phrase
    in words comes in one version per language, `name_en` and `name_zh`: they count as one value."""
    en, zh = ({re.sub(f"_{lang}$", "", key)
               for _, key, _ in glue_references(markdown(notebook(ROOT / "book" / lang / f"{name}.ipynb")))}
              for lang in LANGS)
    assert en == zh, f"{name}: glued only in EN: {sorted(en - zh)}; only in ZH: {sorted(zh - en)}."


# ------------------------------------------------------------------------------------------------- Chinese
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")


def plain_prose(markdown_text: str) -> str:
    """Prose without code, math, roles, links, URLs and HTML tags: the words a reader reads."""
    text = without_code_spans(prose(markdown_text))
    text = re.sub(r"\$\$[\s\S]*?\$\$", " ", text)
    text = re.sub(r"\\begin\{([\w*]+)\}[\s\S]*?\\end\{\1\}", " ", text)
    text = re.sub(r"(?<![\\$])\$(?!\$)[^$\n]+?(?<!\\)\$", " ", text)
    text = re.sub(r"\\\([\s\S]*?\\\)|\\\[[\s\S]*?\\\]", " ", text)
    text = re.sub(r"\{[^{}`\s]+\}`[^`]*`", " ", text)
    while True:
        shorter = re.sub(r"!?\[[^\[\]]*\]\([^()]*\)", " ", text)
        if shorter == text:
            break
        text = shorter
    text = re.sub(r"https?://\S+|<[^>\n]+>", " ", text)
    return text


def chinese_share(text: str) -> tuple[float, int, int]:
    han, latin = len(HAN.findall(text)), len(LATIN.findall(text))
    return (han / (han + latin) if han + latin else 0.0), han, latin


@pytest.mark.parametrize("path", ZH_NOTEBOOKS, ids=nid)
def test_chinese_prose(path):
    """The Chinese notebook's prose is Chinese: overall, and with no paragraph left in English."""
    nb = notebook(path)
    share, han, latin = chinese_share(plain_prose(markdown(nb)))
    assert share >= MIN_CHINESE_SHARE, (f"{nid(path)}: only {share:.0%} of the letters in the prose are Chinese "
                                        f"({han} Han characters, {latin} Latin letters outside code, math and links); "
                                        "translate it.")
    english = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        lines = [l for l in plain_prose(cell.source).splitlines() if not l.lstrip().startswith((">", "|"))]
        for paragraph in re.split(r"\n\s*\n", "\n".join(lines)):  # quotes of English data and tables aside
            _, h, n = chinese_share(paragraph)
            if h == 0 and n >= ENGLISH_PARAGRAPH:
                english.append(f"cell {i}: {' '.join(paragraph.split())[:100]!r}")
    assert not english, f"{nid(path)}: paragraphs still in English:\n  " + "\n  ".join(english)


# ------------------------------------------------------------------------------------------------- mtlib source
@functools.lru_cache(maxsize=None)
def mtlib_definitions() -> dict[str, list[tuple[str, str, ast.AST]]]:
    """name -> [(module, ast.dump, node)] for every top-level function and class of the mtlib modules."""
    found: dict = {}
    for module in sorted((ROOT / "mtlib").rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(node.name, []).append(
                    (str(module.relative_to(ROOT)), ast.dump(node), node))
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=nid)
def test_code_is_mtlib_code(path):
    """A function or class written out in a chapter under an mtlib name is the code mtlib runs, AST for AST."""
    library, problems = mtlib_definitions(), []
    for k, cell in enumerate(code_cells(notebook(path)), 1):
        tree = python_ast(cell.source)
        for node in tree.body if tree else []:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            candidates = library.get(node.name, [])
            if not candidates or any(ast.dump(node) == dump for _, dump, _ in candidates):
                continue
            module, _, lib_node = candidates[0]
            mine, theirs = ast.unparse(node).splitlines(), ast.unparse(lib_node).splitlines()
            diff = "\n".join(difflib.unified_diff(theirs, mine, module, f"code cell {k}", lineterm="", n=1))
            problems.append(f"code cell {k} defines {node.name}, which differs from mtlib's "
                            f"({', '.join(m for m, _, _ in candidates)}):\n{diff or '(differs in the AST only)'}")
    assert not problems, (f"{nid(path)}: the code you read must be the code the library runs; make the two equal "
                          f"or rename the chapter's version.\n" + "\n".join(problems))


# ------------------------------------------------------------------------------------------------- glossary
@pytest.mark.parametrize("lang", LANGS)
def test_glossary_includes_terms(lang):
    glossary = ROOT / "book" / lang / "glossary.md"
    terms = (ROOT / "book" / "_terms.md").resolve()
    assert terms.exists(), "book/_terms.md (the terminology table) is missing."
    assert glossary.exists(), f"book/{lang}/glossary.md is missing."
    included = []
    for item in blocks(glossary.read_text(encoding="utf-8")):
        d = item[0] == "fence" and directive(item[1])
        if d and d[0] == "include" and d[1]:
            target = d[1].split()[0]
            included.append((ROOT / target.lstrip("/")) if target.startswith("/") else (glossary.parent / target))
    assert any(p.resolve() == terms for p in included), \
        f"book/{lang}/glossary.md does not include book/_terms.md (```{{include}} ../_terms.md```); includes {included}."
