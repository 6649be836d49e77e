"""What mtlib writes under `MTLIB_CACHE_DIR` (default `~/.cache/mtlib`), safe when processes start at once (chapter 00).

Two notebooks opened together on a new laptop, or the test suite's workers, may all need the converted decoder on
their first use. A cached folder is therefore built once, by one process, never in place:

1. under a file lock beside the folder, so that the others wait instead of racing, and then find it finished;
2. in a private temporary folder, which gets a manifest of its files and their sizes last of all;
3. then renamed into place, atomically.

A folder whose manifest is missing or disagrees with its files (a process killed while writing it, a file cut short or
of another size) is removed and built again, never loaded. Single files (downloads) are written to a temporary name and
renamed, so that no reader ever sees half of one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from filelock import FileLock

MANIFEST = ".mtlib-manifest.json"  # {relative path: size in bytes} of every file, written after the last of them


def cache_dir() -> Path:
    """Where mtlib keeps converted checkpoints and downloads: `MTLIB_CACHE_DIR`, else `~/.cache/mtlib`."""
    return Path(os.environ.get("MTLIB_CACHE_DIR", Path.home() / ".cache" / "mtlib")).expanduser()


def is_complete(folder: Path) -> bool:
    """True when `folder` has its manifest and every file it lists, at the listed size."""
    try:
        sizes = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return bool(sizes) and all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, AttributeError):
        return False


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, built by `build(folder)` unless a complete copy exists; safe when several processes call it at once.

    `build` writes the files into the empty folder it is given. Leftovers of killed builds (an incomplete `target`,
    temporary folders beside it) are removed before building.
    """
    target = Path(target)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_complete(target):  # another process built it while this one waited for the lock
            return target
        for leftover in [target, *target.parent.glob(target.name + ".tmp-*")]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp's folder is private to its owner; a cache is readable like any other folder
        try:
            build(tmp)
            sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
            if not sizes:
                raise RuntimeError(f"Building the cache folder {target} wrote no files.")
            (tmp / MANIFEST).write_text(json.dumps(sizes, indent=1), encoding="utf-8")
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename: all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
