"""mtlib.cache: a cached folder is built once when several processes ask for it at once, and a damaged one is rebuilt.

The processes here load `mtlib/cache.py` by its path: it needs only `filelock`, and importing the whole of mtlib
(torch, transformers) in each would make the test ten times slower without testing anything more. The real decoder
goes through the same `build_once` (test_zoo.py checks its folder's manifest), and `.ci/run` starts every run from an
empty cache, where the suite's two workers meet the decoder's first use at about the same time.
"""
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtlib import cache

CACHE_PY = Path(cache.__file__)

WORKER = """
import hashlib, importlib.util, os, sys, time
from pathlib import Path
spec = importlib.util.spec_from_file_location("cache", sys.argv[1])
cache = importlib.util.module_from_spec(spec); spec.loader.exec_module(cache)
target, go, log = Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
while not go.exists():  # every process starts its first use at the same moment
    time.sleep(0.005)

def build(folder):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    for i in range(3):  # slow, and different in every process: a race would mix the files of two builds
        (folder / f"part{i}.bin").write_bytes(f"{os.getpid()}:{i}".encode() * 10000)
        time.sleep(0.2)

cache.build_once(target, build)
digest = hashlib.sha256(b"".join((target / f"part{i}.bin").read_bytes() for i in range(3))).hexdigest()
print(digest)
"""


def folder_digest(folder: Path) -> str:
    return hashlib.sha256(b"".join((folder / f"part{i}.bin").read_bytes() for i in range(3))).hexdigest()


def test_concurrent_first_use_builds_once(tmp_path):
    target, go, log = tmp_path / "cache" / "model", tmp_path / "go", tmp_path / "builds.log"
    outs = [tmp_path / f"out{i}.txt" for i in range(4)]  # files, not pipes: a full pipe would block a process
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(CACHE_PY), str(target), str(go), str(log)],
                              stdout=open(out, "w"), stderr=subprocess.STDOUT) for out in outs]
    time.sleep(0.5)
    go.touch()
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [0] * 4, [out.read_text() for out in outs]
    digests = {out.read_text().strip() for out in outs}
    assert digests == {folder_digest(target)}  # every process read the same, whole folder
    assert len(log.read_text().split()) == 1  # built by one process; the others waited and found it finished
    assert cache.is_complete(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model", "model.lock"]  # no temporary folder left


def write_parts(folder: Path, text: str = "x") -> None:
    for i in range(3):
        (folder / f"part{i}.bin").write_text(text * (i + 1))


def counting(calls: list, text: str = "x"):
    def build(folder):
        calls.append(folder)
        write_parts(folder, text)
    return build


def test_complete_folder_is_not_rebuilt(tmp_path):
    calls = []
    target = cache.build_once(tmp_path / "model", counting(calls))
    assert cache.build_once(target, counting(calls, "y")) == target
    assert len(calls) == 1 and (target / "part2.bin").read_text() == "xxx"
    sizes = json.loads((target / cache.MANIFEST).read_text())
    assert sizes == {"part0.bin": 1, "part1.bin": 2, "part2.bin": 3}


@pytest.mark.parametrize("damage", ["truncate", "delete file", "no manifest", "bad manifest"])
def test_damaged_folder_is_rebuilt_never_loaded(tmp_path, damage):
    """What a process killed while writing (or a damaged copy) leaves behind is detected and built again."""
    target = cache.build_once(tmp_path / "model", counting([]))
    if damage == "truncate":
        (target / "part2.bin").write_text("x")
    elif damage == "delete file":
        (target / "part1.bin").unlink()
    elif damage == "no manifest":
        (target / cache.MANIFEST).unlink()
    else:
        (target / cache.MANIFEST).write_text("{not json")
    assert not cache.is_complete(target)
    calls = []
    cache.build_once(target, counting(calls, "z"))
    assert len(calls) == 1 and cache.is_complete(target)
    assert [(target / f"part{i}.bin").read_text() for i in range(3)] == ["z", "zz", "zzz"]


def test_leftovers_of_killed_builds_are_removed(tmp_path):
    (tmp_path / "model.tmp-abc").mkdir()
    (tmp_path / "model.tmp-abc" / "part0.bin").write_text("half")
    cache.build_once(tmp_path / "model", counting([]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.lock"]


def test_failed_build_leaves_nothing(tmp_path):
    def build(folder):
        write_parts(folder)
        raise KeyboardInterrupt  # the reader stops the cell halfway

    with pytest.raises(KeyboardInterrupt):
        cache.build_once(tmp_path / "model", build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.lock"]


def test_a_build_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="wrote no files"):
        cache.build_once(tmp_path / "model", lambda folder: None)
    assert not (tmp_path / "model").exists()


def test_write_atomically(tmp_path):
    path = tmp_path / "a" / "b.txt"
    cache.write_atomically(path, b"first")
    cache.write_atomically(path, b"second")
    assert path.read_bytes() == b"second" and sorted(p.name for p in path.parent.iterdir()) == ["b.txt"]


def test_write_interrupted_halfway_leaves_nothing(tmp_path, monkeypatch):
    """A write that dies halfway (full disk, a killed process) leaves neither a half file nor a temporary one."""
    path = tmp_path / "data.bin"
    real_fdopen = cache.os.fdopen

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError("No space left on device")

    monkeypatch.setattr(cache.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left"):
        cache.write_atomically(path, b"x" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("MTLIB_CACHE_DIR", str(tmp_path))
    assert cache.cache_dir() == tmp_path
    monkeypatch.setenv("MTLIB_CACHE_DIR", "~/somewhere")
    assert cache.cache_dir() == Path.home() / "somewhere"
    monkeypatch.delenv("MTLIB_CACHE_DIR")
    assert cache.cache_dir() == Path.home() / ".cache" / "mtlib"
