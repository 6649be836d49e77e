"""`make leaderboard`: fill the results store, mtlib/results/leaderboard.jsonl (chapter 17 reads it).

For every step budget, every method of `mtlib.tuning.leaderboard.METHODS` (each technique of `mtlib.tuning` and
the controls: full fine-tuning, head only, and once the frozen probe; full fine-tuning also at twice the longest
budget, where it has stopped rising): the first seed at each rate of the method's grid, the grid extended while
the rate with the lowest validation loss sits at its edge (half a decade at a time, at most four times), then the
other seeds at the chosen rate (the book's rule, `mtlib.tuning.rates`). A record is appended as each run ends, and a
run whose record exists (same key) is skipped, so the script resumes where it stopped; `--minutes` stops it, between
runs, after that long.

    python scripts/leaderboard.py                         # fill the shipped store (local profile)
    python scripts/leaderboard.py --dry-run               # what is done and what is left
    python scripts/leaderboard.py --verify 3              # re-run 3 stored records, compare them exactly
    python scripts/leaderboard.py --store /tmp/s.jsonl --budgets 3 --methods "full fine-tuning"   # (smoke)

Time per step is not taken from these runs (they may share the machine with other work): `--time` measures it apart,
every method side by side in one process, on an idle machine, into mtlib/results/step_times.json.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import mtlib  # noqa: E402
from mtlib import train  # noqa: E402
from mtlib.store import SHIPPED, Store  # noqa: E402
from mtlib.tuning.leaderboard import METHODS, PROBE, SEEDS, Leaderboard, provenance, same_values  # noqa: E402
from mtlib.tuning.rates import rate_rule  # noqa: E402

BUDGETS = {"smoke": (3,), "local": (50, 200, 400), "full": (50, 200, 400)}
# Full fine-tuning also runs at this multiple of the longest budget: the evidence that it has stopped rising there
# (at 400 steps, 1.85 epochs of the 6,920 training sentences; chapter 17 reads both).
BEYOND = {"full fine-tuning": 2}
EXTENSIONS = 4  # a grid grows past its edge at most this often (two decades); then the edge's rate stands, reported


class Filler:
    """Runs what the store lacks, in the order of the plan."""

    def __init__(self, board: Leaderboard, store: Store, command: str, minutes: float | None, dry_run: bool):
        self.board, self.store, self.dry_run = board, store, dry_run
        self.started = provenance(command)  # the code as it was when this process imported it
        self.deadline = time.monotonic() + 60 * minutes if minutes else None
        self.ran = self.missing = 0

    def values(self, key: dict) -> dict | None:
        """The run's values: stored, or computed now and stored; None when it is left for later (dry run, time)."""
        record = self.store.get(key)
        if record is not None:
            return record["values"]
        self.missing += 1
        if self.dry_run or (self.deadline is not None and time.monotonic() > self.deadline):
            return None
        start = time.perf_counter()
        values = self.board.run(key)
        self.store.add(key, values, {**self.started, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
        self.ran += 1
        print(f"{key['method']:32s} steps {key['steps']:4d}  lr {key['lr'] or 0:.0e}  seed {key['seed']}  "
              f"val loss {values.get('val_loss', float('nan')):.4f}  test {values['test_accuracy']:.4f}  "
              f"forgetting {values['forgetting']:+.1f}  ({time.perf_counter() - start:.0f} s)", flush=True)
        return values

    def rate(self, method, steps: int) -> float | None:
        """The rate the book's rule picks for `method` at `steps` (first seed), running what it needs."""
        losses: dict[float, float] = {}
        pending = list(method.rates)
        extensions = 0
        while pending:
            for lr in pending:
                values = self.values(self.board.key(method, lr, SEEDS[0], steps))
                if values is None:
                    return None
                losses[lr] = values["val_loss"]
            chosen, beyond = rate_rule(losses)
            pending = []
            if beyond is not None and extensions < EXTENSIONS:
                pending, extensions = [beyond], extensions + 1
            elif beyond is not None:
                print(f"{method.name}, {steps} steps: the lowest validation loss is still at the edge of the rates "
                      f"tried ({sorted(losses)}) after {EXTENSIONS} extensions; {chosen:g} stands.", flush=True)
        return chosen

    def fill(self, methods, budgets) -> None:
        self.values(self.board.key(PROBE, None, 0, 0))
        plan = [(steps, method) for steps in budgets for method in methods]
        plan += [(BEYOND[m.name] * max(budgets), m) for m in methods if m.name in BEYOND]
        for steps, method in plan:
            lr = self.rate(method, steps)
            if lr is None:
                self.missing += len(SEEDS) - 1  # and the seeds at the rate still to be chosen
                continue
            for seed in SEEDS[1:]:
                self.values(self.board.key(method, lr, seed, steps))


def verify(board: Leaderboard, store: Store, n: int, seed: int) -> int:
    """Re-run `n` stored records whose key this environment reproduces; the number that differ."""
    candidates = sorted((r for r in store if r["key"]["method"] in {**METHODS, PROBE.name: PROBE}
                         and r["key"] == board.key(METHODS.get(r["key"]["method"], PROBE), r["key"]["lr"],
                                                   r["key"]["seed"], r["key"]["steps"])), key=lambda r: r["id"])
    if len(candidates) < n:
        raise SystemExit(f"Only {len(candidates)} records of {store.path} have a key that this environment "
                         f"reproduces (profile, precision, threads, versions, checkpoint); asked to verify {n}.")
    failures = 0
    for record in random.Random(seed).sample(candidates, n):
        again = board.run(record["key"])
        differ = same_values(record["values"], again)
        key = record["key"]
        print(f"verify {key['method']}, steps {key['steps']}, lr {key['lr']}, seed {key['seed']}: "
              + ("identical" if not differ else "DIFFERS in " + ", ".join(differ)), flush=True)
        failures += bool(differ)
    return failures


def sync(device) -> None:
    """Wait for the GPU's queued work, so that a timing measures the work and not its launch."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(board: Leaderboard, methods, rounds: int = 2, steps: int = 12, skip: int = 2) -> tuple[dict, dict]:
    """Seconds per optimiser step of each method, measured side by side: `rounds` passes over the methods in turn,
    each a fresh model trained `steps` steps on the first seed's batches; the median of the steps after the first
    `skip` (warm-up) per pass. Then, with the module in place (unmerged), seconds per forward pass over a batch of the
    test split in eval mode, the median of the same number of batches. Returns ({method: [one median per round]},
    {method: [one inference median per round]})."""
    import statistics

    import torch

    times: dict[str, list[float]] = {}
    inference: dict[str, list[float]] = {}
    for _ in range(rounds):
        for method in methods:
            model = board.model(seed=0)
            lr = method.rates[len(method.rates) // 2]
            # gradual unfreezing as in a 200-step run: the timed steps train the head and the top block
            optimizer = board.prepare(method, model, lr, steps=200) or torch.optim.AdamW(
                train.decay_groups(model, 0.01), lr=lr, fused=True)
            model.train()
            spent = []
            for batch in board.train_loader(seed=0, steps=steps):
                batch = {k: v.to(board.cfg.device) for k, v in batch.items()}
                sync(board.cfg.device)
                start = time.perf_counter()
                with board.autocast():
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
                optimizer.step()
                optimizer.zero_grad()
                sync(board.cfg.device)
                spent.append(time.perf_counter() - start)
            times.setdefault(method.name, []).append(round(statistics.median(spent[skip:]), 4))
            model.eval()
            forward = []
            test_batches = list(board.scored["test"])
            with torch.no_grad():
                for i in range(steps):  # the test split's batches in turn, again from the first if it has fewer
                    batch = {k: v.to(board.cfg.device) for k, v in test_batches[i % len(test_batches)].items()}
                    sync(board.cfg.device)
                    start = time.perf_counter()
                    with board.autocast():
                        model(**batch)
                    sync(board.cfg.device)
                    forward.append(time.perf_counter() - start)
            inference.setdefault(method.name, []).append(round(statistics.median(forward[skip:]), 4))
            print(f"{method.name:32s} step {times[method.name]}  inference {inference[method.name]}", flush=True)
    return times, inference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=SHIPPED)
    parser.add_argument("--budgets", type=int, nargs="+", help="step budgets (default: the profile's)")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), metavar="NAME",
                        help=f"methods to run (default: all): {'; '.join(METHODS)}")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--minutes", type=float, help="stop, between runs, after this many minutes")
    parser.add_argument("--dry-run", action="store_true", help="only count what is stored and what is left")
    parser.add_argument("--verify", type=int, metavar="N", help="re-run N stored records and compare them exactly")
    parser.add_argument("--verify-seed", type=int, default=0)
    parser.add_argument("--time", action="store_true",
                        help="time a step of every method side by side (on an idle machine) into step_times.json")
    args = parser.parse_args(argv)

    cfg = mtlib.setup()
    board, store = Leaderboard(cfg, args.precision), Store(args.store)
    methods = [METHODS[name] for name in args.methods] if args.methods else list(METHODS.values())
    command = shlex.join(["python", "scripts/leaderboard.py", *(argv if argv is not None else sys.argv[1:])])
    if args.verify is not None:
        if args.verify < 1:
            raise SystemExit(f"--verify N re-runs N stored records: N must be at least 1, got {args.verify}.")
        failures = verify(board, store, args.verify, args.verify_seed)
        print(f"{args.verify - failures} of {args.verify} re-runs identical to their records")
        return 1 if failures else 0
    if args.time:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0  # Windows has no load average
        if load > 0.5:
            raise SystemExit(f"The load average is {load:.2f}: another job shares the CPU, and its timings would be "
                             "worthless. Run --time on an idle machine (load below 0.5).")
        times, inference = time_steps(board, methods)
        out = args.store.with_name("step_times.json")
        key = board.key(PROBE, None, 0, 0)
        out.write_text(json.dumps({"seconds_per_step": times, "inference_seconds_per_batch": inference,
                                   "setting": {k: key[k] for k in (
            "data", "checkpoint", "profile", "precision", "threads", "device", "versions")},
            "provenance": provenance(command),
            "load_before": round(load, 2)}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {out}")
        return 0
    filler = Filler(board, store, command, args.minutes, args.dry_run)
    filler.fill(methods, args.budgets or BUDGETS[cfg.profile])
    print(f"{len(store)} records in {store.path}; {filler.ran} computed now; "
          f"{filler.missing - filler.ran} runs (at least) left" + (" (dry run)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
