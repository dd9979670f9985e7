"""One damaged file (a run.json, an alias file, a history line) does not break the whole store:
commands skip it with a warning naming the file, and commands aimed at it fail naming it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.errors import IntegrityError, PromotionRefused, StoreWarning
from nb2prod.runs.predicting import load_run
from nb2prod.runs.store import RunStore, StoredRun

from .conftest import record_run


def nb2prod(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, timeout=300)


def rewrite_record(run: StoredRun, **changes: object) -> None:
    run.path.chmod(0o755)
    path = run.path / "run.json"
    path.chmod(0o644)
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def overwrite(path: Path, text: str) -> None:
    path.parent.chmod(0o755)
    if path.exists():
        path.chmod(0o644)
    path.write_text(text)


@pytest.mark.parametrize(
    "changes, why",
    [
        ({"source": None}, 'records no source \\("source" is null\\)'),
        ({"model": None}, "records no model"),
        ({"status": "errored"}, "status is errored"),
    ],
)
def test_promote_refuses_an_incomplete_record(store: RunStore, changes: dict[str, object], why: str) -> None:
    good, run = record_run(store, with_code=True), record_run(store, with_code=True)
    AliasStore(store).promote(good.run_id)
    rewrite_record(run, **changes)
    with pytest.raises(PromotionRefused, match=f"run {run.run_id} cannot be promoted to 'production': .*{why}"):
        AliasStore(store).promote(run.run_id)
    assert store.resolve("production") == good.run_id


def test_load_run_refuses_a_run_without_source(store: RunStore) -> None:
    run = record_run(store, with_code=True)
    rewrite_record(run, source=None)
    with pytest.raises(IntegrityError, match=f"run {run.run_id} records no source package"):
        load_run(store, run.run_id)


def test_a_malformed_run_json_is_skipped_by_list_and_named_by_show(store: RunStore) -> None:
    a, broken, listed, b = (record_run(store) for _ in range(4))
    overwrite(broken.path / "run.json", "{not json")
    overwrite(listed.path / "run.json", "[1, 2]")
    with pytest.warns(StoreWarning, match=f"skipped run {broken.run_id}: .*run.json is not a valid run manifest"):
        assert [r.run_id for r in store.list()] == [a.run_id, b.run_id]

    s = ["--store", str(store.root)]
    listing = nb2prod("runs", "list", *s, "--format", "json")
    assert listing.returncode == 0
    assert [r["run_id"] for r in json.loads(listing.stdout)] == [a.run_id, b.run_id]
    assert listing.stderr.splitlines()[0] == f"store: {store.root} (from --store)"
    warnings = listing.stderr.splitlines()[1:]
    assert len(warnings) == 2 and all(w.startswith("warning: skipped run ") for w in warnings)
    assert f"{broken.path}/run.json" in listing.stderr and f"{listed.path}/run.json" in listing.stderr
    shown = nb2prod("runs", "show", broken.run_id, *s)
    assert shown.returncode == 2 and f"{broken.path}/run.json is not a valid run manifest" in shown.stderr
    refused = nb2prod("promote", broken.run_id, *s)
    assert refused.returncode == 2 and f"{broken.path}/run.json" in refused.stderr
    assert nb2prod("promote", b.run_id, *s).returncode == 0


def test_a_malformed_alias_file_breaks_only_that_alias(store: RunStore, tmp_path: Path) -> None:
    a, b = record_run(store, with_code=True), record_run(store, with_code=True)
    aliases = AliasStore(store)
    aliases.promote(a.run_id)
    aliases.promote(b.run_id)
    staging = store.root / "aliases" / "staging.json"
    overwrite(staging, '{"alias": "staging", "run_id": ')

    s = ["--store", str(store.root)]
    listing = nb2prod("runs", "list", *s)
    assert listing.returncode == 0 and a.run_id in listing.stdout and "production" in listing.stdout
    assert listing.stderr.splitlines()[1].startswith(
        f"warning: skipped alias staging: alias file {staging} is not valid JSON"
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"a": 0.5, "b": 1}\n')
    predicted = nb2prod("predict", "production", str(rows), *s)
    assert predicted.returncode == 0 and len(predicted.stdout.splitlines()) == 1, predicted.stderr
    aimed = nb2prod("predict", "staging", str(rows), *s)
    assert aimed.returncode == 2 and f"alias file {staging} is not valid JSON" in aimed.stderr
    assert nb2prod("promote", a.run_id, "--alias", "staging", *s).returncode == 2
    back = nb2prod("rollback", *s)
    assert back.returncode == 0 and f"{b.run_id} -> {a.run_id}" in back.stdout


def test_a_malformed_history_line_is_skipped_with_a_warning(store: RunStore) -> None:
    a, b = record_run(store), record_run(store)
    aliases = AliasStore(store)
    aliases.promote(a.run_id)
    history = store.root / "aliases" / "history.jsonl"
    with open(history, "a") as handle:
        handle.write('{"half a line\n[]\n')
    aliases.promote(b.run_id)

    s = ["--store", str(store.root)]
    shown = nb2prod("runs", "history", *s, "--format", "json")
    assert shown.returncode == 0
    assert [(h["from"], h["to"]) for h in json.loads(shown.stdout)] == [(None, a.run_id), (a.run_id, b.run_id)]
    assert shown.stderr.splitlines() == [
        f"store: {store.root} (from --store)",
        f"warning: skipped {history}, line 3: not a history entry.",
        f"warning: skipped {history}, line 4: not a history entry.",
    ]
    back = nb2prod("rollback", *s)
    assert back.returncode == 0 and f"{b.run_id} -> {a.run_id}" in back.stdout
