"""The website as a reader sees it: build the book once, serve it on localhost, open chapter 02 in headless Chromium.

For the English and the Chinese page of chapter 02: the title renders, code is highlighted, the plot (a PNG from the
notebook's stored outputs) loads, jupyter-book's Colab launch button points at this notebook, glued numbers show as
rendered text (no raw MyST), the math is typeset by the site's own MathJax, every resource the page uses comes from
the site itself, and the link to the twin page opens the other language. The site's search finds a Chinese term
(微调) and an English one (fine-tuning) in every chapter that uses it. The build is offline (jupyter-book 1 reads
the stored outputs, executes nothing); the browser may only reach localhost, as a reader without the internet.

Needs Debian's chromium and chromium-driver (`make browser`).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from notebooks import ROOT, code_cells, glue_references, glued, glued_data, headings, markdown_cells, read  # noqa: E402

CHAPTER = "02-first-fine-tune"
LANGS = ("en", "zh")
OTHER = {"en": "zh", "zh": "en"}
COLAB = "colab.research.google.com/github/model-migration/model-migration-book/blob/main/book/{lang}/{name}.ipynb"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BUILD_TIMEOUT = 900


def source(lang: str) -> Path:
    return ROOT / "book" / lang / f"{CHAPTER}.ipynb"


@functools.lru_cache(maxsize=None)
def notebook(lang: str):
    return read(source(lang))


def plain(text: str) -> str:
    """Title text as rendered: markdown emphasis gone, Sphinx's typographic quotes undone, spaces collapsed."""
    text = re.sub(r"[*`]", "", text).replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return re.sub(r"\s+", " ", text).strip()


def title(lang: str) -> str:
    return plain(next(t for c in markdown_cells(notebook(lang)) for level, t in headings(c.source) if level == 1))


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """Build the whole book once (`jupyter-book build <repo> --path-output <tmp>`); returns _build/html."""
    missing = [str(source(lang).relative_to(ROOT)) for lang in LANGS if not source(lang).exists()]
    if missing:
        pytest.fail(f"The website test opens chapter {CHAPTER}, which is not in the book yet: {', '.join(missing)}.")
    out = tmp_path_factory.mktemp("site")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    start = time.perf_counter()
    done = subprocess.run([str(jupyter_book), "build", str(ROOT), "--path-output", str(out)],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    seconds = time.perf_counter() - start
    log = done.stdout + done.stderr
    html = out / "_build" / "html"
    assert done.returncode == 0 and (html / "index.html").exists(), \
        f"jupyter-book build failed (exit {done.returncode}) after {seconds:.0f} s:\n{log[-6000:]}"
    print(f"\njupyter-book build: {seconds:.1f} s, {len(warnings(log))} warning(s)")
    BUILD_LOG["log"] = log
    return html


BUILD_LOG: dict[str, str] = {}


def warnings(log: str) -> list[str]:
    return [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in log.splitlines() if "WARNING" in line]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(site):
    """The built site on http://127.0.0.1:<free port>/, served from a thread."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver (Debian packages), with a fresh profile and no way off this machine."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not (p.exists() and shutil.which(str(p)))]
    if missing:
        pytest.fail(f"Headless Chromium is needed for the website test, but {' and '.join(missing)} is missing: "
                    "run `make browser` (installs Debian's chromium and chromium-driver; needs root).")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed in this environment: run `make setup` (requirements.txt pins it).")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1024",
                 # Offline and deterministic: any host name fails at once (the MathJax CDN, the Colab badge
                 # image), the site itself is reached by IP.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def page_url(server: str, lang: str) -> str:
    return urllib.parse.urljoin(server, f"book/{lang}/{CHAPTER}.html")


@pytest.fixture
def page(browser, server, request):
    """Chapter 02 in the language of the test's parameter, loaded."""
    from selenium.webdriver.common.by import By

    lang = request.param
    url = page_url(server, lang)
    browser.get(url)
    wait(browser, lambda d: d.execute_script("return document.readyState") == "complete"
         and d.current_url.split("#")[0] == url and d.find_elements(By.CSS_SELECTOR, "article .cell"),
         message=f"{url} did not load")
    return browser, lang


def article(driver):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, "article")


def wait(driver, condition, seconds: float = 20, message: str = "timed out"):
    """WebDriverWait(...).until(condition); on time-out, fail saying where the browser is."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, seconds).until(condition)
    except TimeoutException:
        pytest.fail(f"{message} (after {seconds} s the browser is at {driver.current_url!r}, title {driver.title!r})")


def visible_text(driver) -> str:
    """The article's text without code, math and scripts: what a reader reads as prose."""
    return driver.execute_script(
        "const a = document.querySelector('article').cloneNode(true);"
        "a.querySelectorAll('pre, code, script, style, .math, mjx-container, .headerlink').forEach(e => e.remove());"
        "return a.textContent;")


def h1_now(driver) -> str | None:
    """The text of the article's h1 as shown (None while there is no visible one)."""
    text = driver.execute_script(
        "const h = document.querySelector('article h1');"
        "if (!h || h.getBoundingClientRect().height === 0 || getComputedStyle(h).visibility === 'hidden') return null;"
        "const c = h.cloneNode(true); c.querySelectorAll('.headerlink').forEach(e => e.remove());"
        "return c.textContent;")
    return plain(text) if text and text.strip() else None


def h1_text(driver) -> str:
    return wait(driver, h1_now, message="no visible h1 in the article")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return reply.read()


# ------------------------------------------------------------------------------------------------- tests
def test_build_without_warnings(site):
    """`make book` builds with --warningiserror: a warning here is a failed `make book`."""
    found = warnings(BUILD_LOG["log"])
    assert not found, f"jupyter-book build warnings (each one fails `make book`):\n  " + "\n  ".join(found)


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_title(page):
    driver, lang = page
    assert h1_text(driver) == title(lang), f"{lang}: the page's h1 is not the notebook's title"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_highlighted_code(page):
    driver, lang = page
    tokens = driver.execute_script(
        "return [...document.querySelectorAll('article .cell_input div.highlight pre span[class]')]"
        ".filter(s => s.offsetParent !== null && s.textContent.trim()).length;")
    assert tokens > 0, f"{lang}: no syntax-highlighted code cell on the page (Pygments spans in .cell_input pre)"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_plot_image(page):
    """At least one PNG from the notebook's stored outputs is on the page and loaded in the browser."""
    driver, lang = page
    images = driver.execute_script(
        "return [...document.querySelectorAll('article .cell_output img')].map(i => "
        "({src: i.src, loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth}));")
    pngs = [i for i in images if urllib.parse.urlparse(i["src"]).path.lower().endswith(".png")]
    assert pngs, f"{lang}: no PNG image in the cell outputs of the page (found {images})"
    stored = {hashlib.sha256(base64.b64decode(o["data"]["image/png"])).hexdigest()
              for c in code_cells(notebook(lang)) for o in c.outputs if "image/png" in o.get("data", {})}
    shown = [i for i in pngs if hashlib.sha256(fetch(i["src"])).hexdigest() in stored]
    assert shown, f"{lang}: none of the page's PNGs ({[i['src'] for i in pngs]}) is a figure of the notebook's outputs"
    assert any(i["loaded"] for i in shown), f"{lang}: the notebook's figures did not load in the browser: {shown}"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_colab_launch_button(page):
    driver, lang = page
    expected = COLAB.format(lang=lang, name=CHAPTER)
    buttons = driver.execute_script(
        "return [...document.querySelectorAll('a.dropdown-item, .header-article a, .bd-header-article a')]"
        ".map(a => a.href).filter(h => h.includes('colab.research.google.com'));")
    assert buttons, f"{lang}: no Colab launch button (jupyter-book's rocket menu) on the page"
    assert any(expected in href for href in buttons), f"{lang}: the Colab launch button opens {buttons}, not {expected}"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_glue_and_math_rendered(page):
    """Glued numbers show as their formatted values, math as math: no raw {glue:text}`...` or $...$ on the page."""
    from myst_nb.core.variables import format_plain_text

    driver, lang = page
    text = visible_text(driver)
    raw = sorted(set(re.findall(r"\{[a-z][\w:-]*\}`[^`]*`?", text)))
    assert not raw, f"{lang}: MyST roles left as raw text on the page: {raw}"
    assert "{glue" not in text, f"{lang}: raw glue syntax on the page"
    nb = notebook(lang)
    values = glued(nb)
    pasted = driver.execute_script(
        "return [...document.querySelectorAll('article .pasted-text')].map(e => e.textContent.trim());")
    md = "\n\n".join(c.source for c in markdown_cells(nb))
    for role, key, spec in glue_references(md):
        if role == "glue:text" and key in values:
            want = format_plain_text(glued_data(values[key])["text/plain"], spec or "s")
            assert want in pasted, f"{lang}: {{glue:text}}`{key}:{spec}` should show {want!r}; glued texts: {pasted}"
    if re.search(r"\$[^$\n]+\$", md):
        math = driver.execute_script("return document.querySelectorAll('article .math, article mjx-container').length;")
        assert math > 0, f"{lang}: the notebook has $...$ math, the page has no math element"
    assert "$$" not in text and not re.search(r"\$[^$\n]*\\[A-Za-z]+[^$\n]*\$", text), \
        f"{lang}: raw LaTeX between dollars on the page (outside math elements)"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_math_typeset_without_network(page):
    """MathJax comes from the site (no CDN) and typesets every formula: no raw \\( or $$ left on the page."""
    driver, lang = page
    scripts = driver.execute_script("return [...document.querySelectorAll('script[src]')].map(s => s.src);")
    mathjax = [u for u in scripts if "mathjax" in u.lower()]
    assert mathjax and all(u.startswith(driver.current_url.split("/book/")[0]) for u in mathjax), \
        f"{lang}: MathJax should be served by the site itself, the page loads {mathjax}"
    count = driver.execute_script("return document.querySelectorAll('article .math').length;")
    assert count > 0, f"{lang}: the chapter has no math element to typeset"
    wait(driver, lambda d: d.execute_script(
        "return document.querySelectorAll('article .math mjx-container').length") >= count, seconds=30,
        message=f"{lang}: MathJax did not typeset the page's {count} formulas")
    raw = driver.execute_script(
        "return [...document.querySelectorAll('article .math')].filter(e => !e.querySelector('mjx-container'))"
        ".map(e => e.textContent.slice(0, 60));")
    assert not raw, f"{lang}: formulas left as raw LaTeX: {raw}"


def search_results(driver, server: str, query: str) -> set[str]:
    """The pages that the site's own search lists for `query` (Sphinx's search page, run in the browser)."""
    from selenium.webdriver.common.by import By

    driver.get(urllib.parse.urljoin(server, "search.html?q=" + urllib.parse.quote(query)))
    wait(driver, lambda d: any(ch.isdigit() for ch in d.execute_script(
        "const s = document.querySelector('#search-results .search-summary'); return s ? s.textContent : '';")),
        seconds=30, message=f"the search for {query!r} did not finish")
    links = driver.find_elements(By.CSS_SELECTOR, "#search-results ul.search li a")
    return {urllib.parse.urlparse(a.get_attribute("href")).path.lstrip("/").rsplit(".", 1)[0] for a in links}


@pytest.mark.parametrize("query, lang", [("微调", "zh"), ("fine-tuning", "en")])
def test_search_finds_the_chapters_that_use_a_term(browser, server, query, lang):
    """Chinese is segmented into words (jieba), so 微调 is a term of its own, not part of a whole clause."""
    from notebooks import chapters

    using = {f"book/{lang}/{p.stem}" for p in chapters(lang)
             if query.lower() in "\n".join(c.source for c in markdown_cells(read(p))).lower()}
    assert using, f"no {lang} chapter uses {query!r}: the test needs a term that the book uses"
    found = search_results(browser, server, query)
    missing = sorted(using - found)
    assert not missing, f"searching {query!r} misses chapters that use it: {missing} (found {sorted(found)})"


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_local_resources_load(page, server):
    """Every stylesheet, script and image the page uses comes from the site itself and is there (HTTP 200)."""
    driver, lang = page
    urls = driver.execute_script(
        "return [...document.querySelectorAll('link[rel=stylesheet][href], script[src], img[src]')]"
        ".map(e => e.href || e.src);")
    remote = sorted({u for u in urls if not u.startswith(server) and not u.startswith("data:")})
    assert not remote, f"{lang}: the page needs other hosts, which a reader without the internet cannot reach: {remote}"
    local = sorted({u.split("#")[0] for u in urls if u.startswith(server)})
    broken = []
    for url in local:
        try:
            fetch(url)
        except urllib.error.URLError as err:
            broken.append(f"{url} ({err})")
    assert local, f"{lang}: the page uses no local stylesheet or script: is the theme there?"
    assert not broken, f"{lang}: resources missing from the built site:\n  " + "\n  ".join(broken)


@pytest.mark.parametrize("page", LANGS, indirect=True)
def test_twin_link(page, server):
    """The link to the other language's chapter, clicked, opens that page with its title."""
    from selenium.webdriver.common.by import By

    driver, lang = page
    other = OTHER[lang]
    target = page_url(server, other)
    links = [a for a in article(driver).find_elements(By.CSS_SELECTOR, "a[href]")
             if a.get_attribute("href").split("#")[0] == target]
    assert links, f"{lang}: no link to {target} in the chapter (the twin link of the first cell)"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", links[0])
    links[0].click()
    wait(driver, lambda d: d.current_url.split("#")[0] == target
         and d.execute_script("return document.readyState") == "complete",
         message=f"{lang}: clicking the twin link did not open {target}")
    wait(driver, lambda d: h1_now(d) == title(other), seconds=10,
         message=f"{lang}: the twin page's h1 is not the {other} notebook's title {title(other)!r}")
