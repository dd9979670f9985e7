from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from nb2prod.errors import InputError
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.errors import IntegrityError, PromotionRefused
from nb2prod.runs.record import ERRORED, FAILED_GATE
from nb2prod.runs.store import RunStore

from .conftest import record_run


def test_promote_rollback_rollback(store: RunStore):
    a, b, c = (record_run(store, C=C) for C in (0.5, 1.0, 2.0))
    aliases = AliasStore(store)
    aliases.promote(a.run_id)
    aliases.promote(b.run_id)
    aliases.promote(c.run_id[:-1])  # a unique prefix names a run too
    assert store.resolve("production") == c.run_id

    change = aliases.rollback()
    assert (change.action, change.from_run, change.to_run) == ("rollback", c.run_id, b.run_id)
    assert store.resolve("production") == b.run_id
    aliases.rollback()
    assert store.resolve("production") == a.run_id
    with pytest.raises(InputError, match="no earlier target"):
        aliases.rollback()
    assert store.resolve("production") == a.run_id

    history = aliases.history("production")
    assert [(h.action, h.from_run, h.to_run) for h in history] == [
        ("promote", None, a.run_id),
        ("promote", a.run_id, b.run_id),
        ("promote", b.run_id, c.run_id),
        ("rollback", c.run_id, b.run_id),
        ("rollback", b.run_id, a.run_id),
    ]
    assert all(h.who and h.when for h in history)


def test_aliases_are_independent_and_accept_an_alias_as_run(store: RunStore):
    a, b = record_run(store), record_run(store)
    aliases = AliasStore(store)
    aliases.promote(a.run_id, alias="staging")
    aliases.promote("staging", alias="production")
    aliases.promote(b.run_id, alias="staging")
    assert store.resolve("production") == a.run_id
    assert store.resolve("staging") == b.run_id
    assert aliases.aliases_of(a.run_id) == ["production"]


@pytest.mark.parametrize("status", [FAILED_GATE, ERRORED])
def test_failed_runs_are_never_promoted(store: RunStore, status: str):
    good, bad = record_run(store), record_run(store, status=status)
    aliases = AliasStore(store)
    aliases.promote(good.run_id)
    with pytest.raises(PromotionRefused, match=f"status is {status}"):
        aliases.promote(bad.run_id)
    assert store.resolve("production") == good.run_id
    assert len(aliases.history()) == 1


def test_a_tampered_run_is_not_promoted(store: RunStore):
    run = record_run(store)
    model = run.path / run.manifest.model.file
    model.chmod(0o644)
    with open(model, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(IntegrityError, match="model/model.skops"):
        AliasStore(store).promote(run.run_id)


def test_bad_alias_names_are_refused(store: RunStore):
    run = record_run(store)
    with pytest.raises(InputError, match="not a valid name"):
        AliasStore(store).promote(run.run_id, alias="../prod")


def _promote_many(root: str, run_ids: list[str], start) -> None:
    start.wait()
    aliases = AliasStore(RunStore(root))
    for run_id in run_ids:
        aliases.promote(run_id)


def test_concurrent_promotes_leave_a_valid_alias_and_complete_history(store: RunStore):
    runs = [record_run(store) for _ in range(4)]
    ids = [r.run_id for r in runs]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    # Each process promotes all four runs in its own order, 10 times over.
    orders = [ids * 10, list(reversed(ids)) * 10, ids[1:] + ids[:1], (ids[2:] + ids[:2]) * 5]
    procs = [ctx.Process(target=_promote_many, args=(str(store.root), order, start)) for order in orders]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0

    aliases = AliasStore(store)
    state = aliases.state("production")
    assert state is not None and state.run_id in ids
    raw = json.loads((store.root / "aliases" / "production.json").read_text())
    assert raw["run_id"] == state.run_id

    history = aliases.history("production")
    # every change that moved the alias is there, and they chain: each starts where the last ended
    assert history[0].from_run is None
    for before, after in zip(history, history[1:]):
        assert after.from_run == before.to_run
    assert history[-1].to_run == state.run_id
    assert len(state.previous) == len(history) - 1
    assert not list(Path(store.root, "aliases").glob("*.tmp"))


def test_a_crash_while_moving_the_alias_leaves_the_old_target(store: RunStore, monkeypatch: pytest.MonkeyPatch):
    a, b = record_run(store), record_run(store)
    aliases = AliasStore(store)
    aliases.promote(a.run_id)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr("nb2prod.runs.aliases.os.replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        aliases.promote(b.run_id)
    monkeypatch.undo()
    assert store.resolve("production") == a.run_id
    history = aliases.history()  # the change was written first, and is known not to have happened
    assert [(h.to_run, h.status) for h in history] == [(a.run_id, "completed"), (b.run_id, "aborted")]
    assert sorted(p.name for p in (store.root / "aliases").iterdir()) == [".lock", "history.jsonl", "production.json"]
    aliases.promote(b.run_id)  # the lock was released
    assert store.resolve("production") == b.run_id


def test_rollback_refuses_a_target_that_no_longer_verifies(store: RunStore):
    a, b = record_run(store), record_run(store)
    aliases = AliasStore(store)
    aliases.promote(a.run_id)
    aliases.promote(b.run_id)
    a.path.chmod(0o755)
    (a.path / "model" / "model.sha256").chmod(0o644)
    (a.path / "model" / "model.sha256").write_text("0" * 64)
    with pytest.raises(IntegrityError, match=f"cannot roll back to run {a.run_id}: .*model/model.sha256 changed"):
        aliases.rollback()
    assert store.resolve("production") == b.run_id


def _left_by_a_killed_promote(store: RunStore, run_id: str, alias_written: bool) -> str:
    """The files a promote killed after its intent (and, if `alias_written`, after the alias) leaves."""
    folder = store.root / "aliases"
    old = json.loads((folder / "production.json").read_text())
    intent = {
        "txid": "feedc0de00000001",
        "state": "intent",
        "when": "2026-12-01T00:00:00.000000Z",
        "who": "killed@host",
        "alias": "production",
        "action": "promote",
        "from": old["run_id"],
        "to": run_id,
    }
    with open(folder / "history.jsonl", "a") as handle:
        handle.write(json.dumps(intent) + "\n")
    if alias_written:
        state = {**old, "run_id": run_id, "previous": [*old["previous"], old["run_id"]], "txid": intent["txid"]}
        (folder / "production.json").write_text(json.dumps(state))
    (folder / ".production.json.x1y2.tmp").write_text("{")  # a half-written replacement
    return intent["txid"]


@pytest.mark.parametrize("alias_written, outcome", [(True, "completed"), (False, "aborted")])
def test_a_change_left_unfinished_is_settled_by_what_the_alias_records(
    store: RunStore, alias_written: bool, outcome: str
):
    a, b, c = (record_run(store) for _ in range(3))
    aliases = AliasStore(store)
    aliases.promote(a.run_id)
    txid = _left_by_a_killed_promote(store, b.run_id, alias_written)
    assert store.resolve("production") == (b.run_id if alias_written else a.run_id)
    [first, unfinished] = aliases.history()
    assert (unfinished.txid, unfinished.to_run, unfinished.status) == (txid, b.run_id, outcome)

    aliases.promote(c.run_id)  # the next change writes the outcome down before its own
    lines = [json.loads(line) for line in (store.root / "aliases" / "history.jsonl").read_text().splitlines()]
    assert {"txid": txid, "state": outcome} == {k: v for k, v in lines[3].items() if k in ("txid", "state")}
    assert [(h.to_run, h.status) for h in aliases.history()] == [
        (a.run_id, "completed"),
        (b.run_id, outcome),
        (c.run_id, "completed"),
    ]
    assert aliases.history()[-1].from_run == (b.run_id if alias_written else a.run_id)
    assert not list((store.root / "aliases").glob("*.tmp"))
