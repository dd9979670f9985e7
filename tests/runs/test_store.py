from __future__ import annotations

import os
import stat
from datetime import datetime, timezone

import pytest

from nb2prod.runs.errors import IntegrityError, RunNotFound
from nb2prod.runs.ids import is_run_id, new_run_id
from nb2prod.runs.record import FAILED_GATE, RunManifest
from nb2prod.runs.store import RunStore

from .conftest import record_run


def test_ids_in_the_same_second_differ_and_sort_by_time():
    moment = datetime(2026, 11, 30, 13, 34, 3, tzinfo=timezone.utc)
    ids = {new_run_id(moment) for _ in range(200)}
    assert len(ids) == 200
    assert all(i.startswith("20261130T133403Z-") and is_run_id(i) for i in ids)
    later = new_run_id(datetime(2026, 11, 30, 13, 34, 4, tzinfo=timezone.utc))
    assert max(ids) < later


def test_two_runs_recorded_back_to_back_get_their_own_folders(store: RunStore):
    first = record_run(store)
    second = record_run(store)
    assert first.run_id != second.run_id
    assert first.run_id[:16] == second.run_id[:16] or first.run_id < second.run_id
    assert [r.run_id for r in store.list()] == [first.run_id, second.run_id]
    assert not list((store.root / ".staging").iterdir())


def test_run_folder_is_read_only_and_intact(store: RunStore):
    run = record_run(store)
    assert (run.path / "run.json").is_file()
    for path in [run.path, *run.path.rglob("*")]:
        mode = path.stat().st_mode
        assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), path
    assert store.problems(run) == []
    store.verify(run)  # raises when the run does not verify
    assert set(run.manifest.files) == {"params.json", "metrics.json", "model/model.skops", "model/model.sha256"}


def test_manifest_round_trips(store: RunStore):
    run = record_run(store, status=FAILED_GATE)
    again = RunManifest.read(run.path / "run.json")
    assert again == run.manifest
    assert again.failure is not None and again.failure.cell.role == "metrics"
    assert again.contract.features[0].name == "a"


def test_commit_never_replaces_an_existing_run(store: RunStore):
    run = record_run(store)
    run_id, folder = store.staging_dir()
    manifest = RunManifest.from_dict({**run.manifest.to_dict(), "run_id": run.run_id})
    os.rename(folder, folder.parent / run.run_id)
    with pytest.raises(FileExistsError):
        store.commit(folder.parent / run.run_id, manifest)
    assert RunManifest.read(run.path / "run.json") == run.manifest


def test_resolve_by_id_prefix_and_errors(store: RunStore):
    run = record_run(store)
    assert store.resolve(run.run_id) == run.run_id
    assert store.resolve(run.run_id[:-2]) == run.run_id
    with pytest.raises(RunNotFound, match="'nope' not found"):
        store.resolve("nope")
    record_run(store)
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.resolve(run.run_id[:8])
    with pytest.raises(RunNotFound, match="does not exist"):
        RunStore(store.root / "missing").resolve("production")


def test_verify_reports_a_changed_file(store: RunStore):
    run = record_run(store)
    path = run.path / "metrics.json"
    os.chmod(path, 0o644)
    path.write_text('{"accuracy": 1.0}\n')
    assert store.problems(run) == ["metrics.json changed since the run was recorded (sha256 differs)"]
    with pytest.raises(IntegrityError, match="metrics.json changed"):
        store.verify(run)


def test_corrupt_manifest_is_one_clear_error(store: RunStore):
    run = record_run(store)
    os.chmod(run.path, 0o755)
    os.chmod(run.path / "run.json", 0o644)
    (run.path / "run.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="not a valid run manifest"):
        store.get(run.run_id)


def test_staging_left_by_a_dead_process_is_removed(store: RunStore):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_id, folder = store.staging_dir()
    (folder / "params.json").write_text("{}")
    owner = folder.parent / f"{run_id}.owner"
    host = owner.read_text().split()[0]
    owner.write_text(f"{host} {dead.stdout.strip()}\n")  # as if a killed process had written it
    _, alive_folder = store.staging_dir()  # this process is alive: its folder stays
    record_run(store)
    assert not folder.exists() and not owner.exists()
    assert alive_folder.exists()
    assert sorted(p.name for p in (store.root / ".staging").iterdir()) == sorted(
        [alive_folder.name, f"{alive_folder.name}.owner"]
    )
