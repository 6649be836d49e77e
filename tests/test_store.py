"""mtlib.store: records found by their whole key, a mismatched key refused with the fields that differ, a run killed
while writing leaves nothing behind; and the store shipped with mtlib holds well-formed records."""
import copy
import json
import math

import pytest

from mtlib import store
from mtlib.store import Store, StoreError

KEY = {"task": "sst2-encoder", "method": "LoRA r=8, query and value", "technique": "lora",
       "config": {"r": 8, "target_modules": ["query", "value"]}, "lr": 3e-3, "seed": 0, "steps": 200,
       "data": {"name": "sst2", "train": 6920, "validation": 872, "test": 1821},
       "checkpoint": {"name": "all-MiniLM-L6-v2", "sha256": "ab" * 32}, "profile": "local", "precision": "fp32",
       "threads": 2, "device": "cpu", "versions": {"mtlib": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"}}
VALUES = {"val_loss": 0.31, "test_accuracy": 0.87}
PROVENANCE = {"commit": "abc", "date": "2026-12-07", "cpu": "test", "command": "pytest"}


def other(**changes):
    key = copy.deepcopy(KEY)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = key
        for part in path:
            node = node[part]
        node[last] = value
    return key


def test_add_and_find_again(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add(KEY, VALUES, PROVENANCE)
    again = Store(path)
    assert len(again) == 1
    assert again.require(KEY)["values"] == VALUES
    assert again.get(json.loads(json.dumps(KEY))) is not None  # the same key, however it was built
    assert again.get(other(seed=1)) is None
    with pytest.raises(StoreError, match="already holds a record with this key"):
        again.add(KEY, VALUES, PROVENANCE)


def test_key_id_ignores_order_of_fields():
    assert store.key_id(dict(reversed(list(KEY.items())))) == store.key_id(KEY)
    assert store.key_id(other(lr=1e-3)) != store.key_id(KEY)


@pytest.mark.parametrize("field,value,shown", [
    ("versions__torch", "2.12.0", "versions.torch: stored '2.13.0', asked '2.12.0'"),
    ("precision", "bf16", "precision: stored 'fp32', asked 'bf16'"),
    ("checkpoint__sha256", "cd" * 32, "checkpoint.sha256"),
    ("data__train", 800, "data.train: stored 6920, asked 800"),
])
def test_mismatched_key_is_refused_with_the_fields_that_differ(tmp_path, field, value, shown):
    s = Store(tmp_path / "store.jsonl")
    s.add(KEY, VALUES, PROVENANCE)
    with pytest.raises(StoreError) as err:
        s.require(other(**{field: value}))
    message = str(err.value)
    assert "under another key, so it is not used" in message and shown in message
    assert message.count("stored") == 1  # only the field that differs is listed


def test_run_not_in_the_store(tmp_path):
    s = Store(tmp_path / "store.jsonl")
    s.add(KEY, VALUES, PROVENANCE)
    with pytest.raises(StoreError, match="holds no record of the run .*seed=2.*make leaderboard"):
        s.require(other(seed=2))


def test_edited_key_is_refused(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add(KEY, VALUES, PROVENANCE)
    record = json.loads(path.read_text())
    record["key"]["lr"] = 1e-2  # an edit that would pass off a run as another
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(StoreError, match="line 1: its id does not match its key"):
        Store(path)


def test_line_cut_short_by_a_killed_run(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add(KEY, VALUES, PROVENANCE)
    with open(path, "a") as out:
        out.write('{"id": "12", "key": {"task"')  # the process died while writing
    s = Store(path)
    assert len(s) == 1
    s.add(other(seed=1), VALUES, PROVENANCE)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line)["values"] == VALUES for line in lines)


def test_whole_last_line_without_its_newline_is_kept(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add(KEY, VALUES, PROVENANCE)
    path.write_text(path.read_text().rstrip("\n"))  # killed between the record and its newline
    s = Store(path)
    assert len(s) == 1
    s.add(other(seed=1), VALUES, PROVENANCE)
    assert len(Store(path)) == 2


def test_same_run_twice_is_an_error(tmp_path):
    path = tmp_path / "store.jsonl"
    Store(path).add(KEY, VALUES, PROVENANCE)
    path.write_text(path.read_text() * 2)
    with pytest.raises(StoreError, match="line 2: a second record of the same run"):
        Store(path)


def test_damaged_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text("not json\n" + json.dumps({"id": store.key_id(KEY), "key": KEY, "values": VALUES}) + "\n")
    with pytest.raises(StoreError, match="line 1, is not a record"):
        Store(path)


# ------------------------------------------------------------------------------------------ the shipped store
def test_shipped_store_records_are_well_formed():
    shipped = Store()
    assert len(shipped) > 0, f"{store.SHIPPED} is missing or empty"
    for record in shipped:
        key, values = record["key"], record["values"]
        assert {"recipe", "forgetting_probe", "cpu_capability"} <= set(key) and set(KEY) <= set(key), key
        assert {"commit", "date", "cpu", "command"} <= set(record["provenance"])
        assert len(values["test_correct"]) == key["data"]["test"]
        assert set(values["test_correct"]) <= {"0", "1"}
        assert values["test_accuracy"] == pytest.approx(values["test_correct"].count("1") / key["data"]["test"])
        assert 0 <= values["val_accuracy"] <= 1
        if key["technique"] == "probe":
            continue
        assert len(values["train_loss"]) == key["steps"] and all(math.isfinite(x) for x in values["train_loss"])
        assert 0 < values["trainable"] <= values["total"] and values["saved_bytes"] > 0
        assert math.isfinite(values["val_loss"]) and -100 <= values["forgetting"] <= 100
