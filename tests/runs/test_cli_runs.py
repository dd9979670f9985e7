"""The runs, promote and rollback commands, as a user runs them (a subprocess, real exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from nb2prod.runs.record import FAILED_GATE
from nb2prod.runs.store import RunStore

from .conftest import record_run


def nb2prod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_list_show_diff_promote_rollback(store: RunStore):
    a = record_run(store, C=0.1)
    b = record_run(store, C=5.0)
    bad = record_run(store, status=FAILED_GATE)
    s = ["--store", str(store.root)]

    listing = json.loads(nb2prod("runs", "list", *s, "--format", "json").stdout)
    assert [r["run_id"] for r in listing] == [a.run_id, b.run_id, bad.run_id]
    assert listing[2]["status"] == FAILED_GATE

    text = nb2prod("runs", "list", *s).stdout
    assert a.run_id in text and "failed-gate" in text

    diff = nb2prod("runs", "diff", a.run_id, b.run_id, *s, "--format", "json")
    assert diff.returncode == 0
    data = json.loads(diff.stdout)
    assert data["params"] == {"C": {"a": 0.1, "b": 5.0}}
    assert set(data["model"]) == {"contents"} and data["pins"] == {} and not data["same"]

    refused = nb2prod("promote", bad.run_id, *s)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("store: ")]  # the store used
    assert errors[0].startswith(f"error: run {bad.run_id} cannot be promoted") and "Traceback" not in refused.stderr

    assert nb2prod("promote", a.run_id, *s).returncode == 0
    assert nb2prod("promote", b.run_id, *s).returncode == 0
    shown = json.loads(nb2prod("runs", "show", "production", *s, "--format", "json").stdout)
    assert shown["run_id"] == b.run_id and shown["aliases"] == ["production"] and shown["modified_files"] == []

    back = nb2prod("rollback", *s)
    assert back.returncode == 0 and f"{b.run_id} -> {a.run_id}" in back.stdout
    again = nb2prod("rollback", *s)
    assert again.returncode == 2 and "no earlier target" in again.stderr

    history = json.loads(nb2prod("runs", "history", *s, "--format", "json").stdout)
    assert [(h["action"], h["from"], h["to"]) for h in history] == [
        ("promote", None, a.run_id),
        ("promote", a.run_id, b.run_id),
        ("rollback", b.run_id, a.run_id),
    ]


def test_unknown_run_is_one_line_and_exit_2(store: RunStore, tmp_path: Path):
    record_run(store)
    result = nb2prod("runs", "show", "staging", "--store", str(store.root))
    assert result.returncode == 2
    store_line, *error = result.stderr.strip().splitlines()  # the store it looked in, then one sentence
    assert store_line == f"store: {store.root} (from --store)"
    assert len(error) == 1 and "'staging' not found" in error[0]


def test_store_defaults_to_runs_in_the_working_folder(store: RunStore):
    run = record_run(store)
    result = nb2prod("runs", "show", run.run_id[:12], cwd=store.root.parent)
    assert result.returncode == 0 and run.run_id in result.stdout
