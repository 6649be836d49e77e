"""The results store (chapter 17; chapters 06-16 read their method's rows): records of runs too long for a chapter,
computed once by `make leaderboard` and shipped inside mtlib, so that every profile and Colab read the same table.

A record is one training run, one line of JSON:

    {"id": sha256 of the key, "key": {...everything that determines the run...},
     "values": {...what it measured...}, "provenance": {...commit, date, CPU, command...}}

The key holds the technique and its whole config, the rate, the seed, the step budget, the training recipe, the data
(its files' hashes and the sample), the forgetting probe's settings, the checkpoint and the hash of its files, the
profile, the precision, the device, the CPU threads and instruction set, the versions of the libraries, and a run
format that is bumped by hand when the code of a run changes its results. A record is looked up by its whole key:
a record whose key does not match the run asked for is never used, and `require` says which fields differ. Records are appended as runs end, so a long computation resumes where
it stopped.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

SHIPPED = Path(__file__).parent / "results" / "leaderboard.jsonl"
RUN_FIELDS = ("task", "method", "config", "lr", "seed", "steps")  # which run; the other fields: how it was computed


class StoreError(RuntimeError):
    """A store that cannot be read, or a record asked for that it does not hold under the same key."""


def key_id(key: dict) -> str:
    """The record's id: the sha256 of its key as canonical JSON."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def flat(key: dict, prefix: str = "") -> dict:
    """A nested key as one level: {"versions.torch": "2.13.0", ...}."""
    out = {}
    for name, value in key.items():
        if isinstance(value, dict) and name != "config":
            out.update(flat(value, f"{prefix}{name}."))
        else:
            out[prefix + name] = value
    return out


class Store:
    """The records of one JSON-lines file (default: the store shipped with mtlib)."""

    def __init__(self, path: str | Path = SHIPPED):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                stated, actual = record["id"], key_id(record["key"])
            except (ValueError, KeyError, TypeError) as err:
                if number == len(lines) and not text.endswith("\n"):
                    break  # a line cut short by a killed process: that run is computed again, and `add` removes it
                raise StoreError(f"{self.path}, line {number}, is not a record ({err!r}): delete that line, and "
                                 "`make leaderboard` computes the run again.") from err
            if stated in self.records:
                raise StoreError(f"{self.path}, line {number}: a second record of the same run (id {stated[:12]}...). "
                                 "A run is stored once: delete one of the two lines.")
            if stated != actual:
                raise StoreError(f"{self.path}, line {number}: its id does not match its key (the key was edited "
                                 "after the run). A record whose key does not match is never used: delete that line, "
                                 "and `make leaderboard` computes the run again.")
            self.records[stated] = record

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records.values())

    def get(self, key: dict) -> dict | None:
        """The record with exactly this key, or None."""
        return self.records.get(key_id(key))

    def require(self, key: dict) -> dict:
        """The record with exactly this key; a clear error naming the fields that differ when the store holds the
        same run computed otherwise (another torch, checkpoint, precision...), or when it does not hold the run."""
        record = self.get(key)
        if record is not None:
            return record
        wanted = flat(key)
        same_run = [r for r in self if all(flat(r["key"]).get(f) == wanted.get(f) for f in RUN_FIELDS)]
        run = ", ".join(f"{f}={wanted.get(f)!r}" for f in RUN_FIELDS)
        if not same_run:
            raise StoreError(f"The store {self.path} holds no record of the run {run}. Compute it with "
                             "`make leaderboard` (scripts/leaderboard.py).")
        theirs = flat(same_run[0]["key"])
        differ = [f"{f}: stored {theirs.get(f)!r}, asked {wanted.get(f)!r}" for f in sorted(set(theirs) | set(wanted))
                  if theirs.get(f) != wanted.get(f)]
        raise StoreError(f"The store {self.path} holds the run {run}, but under another key, so it is not used:\n  "
                         + "\n  ".join(differ) + "\nRe-run it where these match, or compute it again here with "
                         "`make leaderboard` (it then gets its own record).")

    def add(self, key: dict, values: dict, provenance: dict) -> dict:
        """Append a record (written and flushed to disk at once, so that a killed run loses only itself)."""
        record = {"id": key_id(key), "key": key, "values": values, "provenance": provenance}
        if record["id"] in self.records:
            raise StoreError(f"The store {self.path} already holds a record with this key; a run is stored once.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):  # two writers take turns; neither cuts the other's line
            written = self.path.read_bytes() if self.path.exists() else b""
            if written and not written.endswith(b"\n"):  # the last write was cut short (a killed process)
                tail = written[written.rfind(b"\n") + 1:]
                try:
                    json.loads(tail)  # whole but for its newline: keep it
                    ending = b"\n"
                except ValueError:
                    ending = None
                with open(self.path, "r+b") as out:
                    if ending:
                        out.seek(0, os.SEEK_END)
                        out.write(ending)
                    else:
                        out.truncate(written.rfind(b"\n") + 1)
            with open(self.path, "a", encoding="utf-8", newline="\n") as out:
                out.write(json.dumps(record, sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
        self.records[record["id"]] = record
        return record
