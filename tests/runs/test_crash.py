"""Crash safety of runs, with real processes killed by SIGKILL at random points (fixed seeds, a
bounded number of kills): promote and rollback leave the alias at the old or the new target with a
history that agrees, and training never leaves a half-written run visible."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

from nb2prod import api
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.ids import is_run_id
from nb2prod.runs.store import RunStore

from .conftest import record_run, write_ridge_project

PROMOTE_LOOP = """
import random, sys
from nb2prod.errors import InputError
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore

aliases = AliasStore(RunStore(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
ids = sys.argv[3:]
print("ready", flush=True)
while True:
    if rng.random() < 0.4:
        try:
            aliases.rollback()
        except InputError:  # no earlier target yet
            pass
    else:
        aliases.promote(rng.choice(ids))
"""


def assert_alias_and_history_agree(store: RunStore, ids: list[str]) -> list[str]:
    """The alias points at one of the runs; the completed changes chain up to it; returns statuses."""
    aliases = AliasStore(store)
    state = aliases.state("production")
    changes = aliases.history("production")
    assert all(c.status in ("completed", "aborted") for c in changes)
    done = [c for c in changes if c.status == "completed"]
    if state is None:
        assert done == []
        return [c.status for c in changes]
    assert state.run_id in ids
    assert done and done[-1].to_run == state.run_id and done[-1].txid in (state.txid, None)
    assert done[0].from_run is None
    for before, after in zip(done, done[1:]):
        assert after.from_run == before.to_run
    return [c.status for c in changes]


def test_promote_and_rollback_killed_at_random_points(store: RunStore) -> None:
    ids = [record_run(store).run_id for _ in range(3)]
    rng = random.Random(20261201)
    unfinished = 0
    for kill in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", PROMOTE_LOOP, str(store.root), str(kill), *ids],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        child.kill()  # SIGKILL: no cleanup of any kind runs in the child
        assert child.wait(30) == -9
        child.stdout.close()

        raw = [json.loads(line) for line in (store.root / "aliases" / "history.jsonl").read_text().splitlines()]
        decided = {e["txid"] for e in raw if "action" not in e}
        unfinished += sum(1 for e in raw if e.get("state") == "intent" and e["txid"] not in decided)
        assert_alias_and_history_agree(store, ids)

        change = AliasStore(store).promote(ids[kill % 3])  # the next promote works ...
        assert store.resolve("production") == ids[kill % 3]
        statuses = assert_alias_and_history_agree(store, ids)
        assert statuses[-1] == "completed" or change.from_run == change.to_run
        raw = [json.loads(line) for line in (store.root / "aliases" / "history.jsonl").read_text().splitlines()]
        decided = {e["txid"] for e in raw if "action" not in e}
        assert all(e["txid"] in decided for e in raw if e.get("state") == "intent")  # ... and settled every change
        assert not list((store.root / "aliases").glob("*.tmp"))
    print(f"12 kills, {unfinished} left a change unfinished")


def test_training_killed_at_random_points_leaves_no_half_run(tmp_path: Path) -> None:
    build = Path(api.build(write_ridge_project(tmp_path / "project")).output_dir)
    store = RunStore(tmp_path / "runs")
    command = [sys.executable, "-m", "nb2prod", "train", str(build), "--engine", "python", "--store", str(store.root)]
    started = time.monotonic()
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    duration = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    rng = random.Random(6)
    for _ in range(6):
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration))
        child.kill()
        child.wait(30)
        visible = sorted(p.name for p in store.root.iterdir() if is_run_id(p.name))
        assert [r.run_id for r in store.list()] == visible  # every run folder holds a whole run ...
        for run in store.list():
            assert store.problems(run) == []  # ... that verifies
    final = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr
    assert len(store.list()) >= 2 and all(store.problems(r) == [] for r in store.list())
    assert list((store.root / ".staging").iterdir()) == []  # what the killed trainings left is gone
