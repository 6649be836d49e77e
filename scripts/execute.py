"""Re-execute chapters and store their outputs (`make execute`; see the README).

Each English notebook runs top to bottom in a fresh kernel (profile from MTLIB_PROFILE, `local` by default), in
its own folder. Its Chinese twin has the same code (a test enforces it), so it receives the outputs of that same
run, cell by cell, instead of spending the same minutes twice. Each chapter's wall time is printed and stored in the
notebook's metadata (`mtlib.seconds`), where the preface reads it; the preface runs last.

    python scripts/execute.py                      # every chapter
    python scripts/execute.py 02-first-fine-tune   # chosen chapters (names, or paths as `make rehearse` takes)
"""
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from notebooks import code_cells, same_code  # noqa: E402


RUN_DEPENDENT = re.compile(r"^<[\w.]+ (object )?at 0x[0-9a-f]+>$")  # e.g. "<pandas.io.formats.style.Styler at 0x7f..>"


def without_addresses(nb) -> int:
    """Drop a rich output's plain-text fallback when it is only an object's address (a pandas Styler shows HTML and
    falls back to `<... Styler at 0x7f...>`, which changes with every run); the number dropped."""
    dropped = 0
    for cell in code_cells(nb):
        for output in cell.outputs:
            data = output.get("data", {})
            if len(data) > 1 and RUN_DEPENDENT.match("".join(data.get("text/plain", "")).strip()):
                del data["text/plain"]
                dropped += 1
    return dropped


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    without_addresses(nb)
    nb.metadata.pop("widgets", None)
    nb.metadata["mtlib"] = {"profile": os.environ["MTLIB_PROFILE"], "seconds": round(seconds)}  # the preface reads it
    nbformat.write(nb, path)
    return seconds


def copy_outputs(source: Path, target: Path) -> None:
    """Give the twin notebook the outputs of `source`, whose code cells are the same (comments aside)."""
    src, dst = nbformat.read(source, as_version=4), nbformat.read(target, as_version=4)
    if not same_code(src, dst):
        raise SystemExit(f"{target} and {source} differ in their code cells: make them equal before executing.")
    for a, b in zip(code_cells(src), code_cells(dst)):
        b.outputs, b.execution_count = a.outputs, a.execution_count
    dst.metadata["language_info"] = src.metadata.get("language_info", {})
    dst.metadata["mtlib"] = src.metadata.get("mtlib", {})
    nbformat.write(dst, target)


def main(names):
    os.environ.setdefault("MTLIB_PROFILE", "local")
    chapters = sorted((ROOT / "book" / "en").glob("*.ipynb"))
    if names:
        names = [Path(name).stem for name in names]
        chapters = [c for c in chapters if c.stem in names]
        missing = set(names) - {c.stem for c in chapters}
        if missing:
            raise SystemExit(f"No chapter named {', '.join(sorted(missing))} in book/en.")
    chapters.sort(key=lambda c: c.stem.startswith("00-"))  # the preface last: it reads the others' timings
    for chapter in chapters:
        seconds = execute(chapter)
        twin = ROOT / "book" / "zh" / chapter.name
        if twin.exists():
            copy_outputs(chapter, twin)
        print(f"{chapter.stem}: {seconds:.0f} s under {os.environ['MTLIB_PROFILE']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
