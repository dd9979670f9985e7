"""The run endpoints of the server extension against a real Jupyter server: training jobs (real
`nb2prod train` child processes and kernels), runs, diff, promote, rollback, cancel, refusals."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.nbtest_helpers import SMALL_CELLS, cell, write_notebook

SLOW_TRAIN = "import time\n\nfor _ in range(1200):\n    time.sleep(0.1)\nvalues = [grow(i) * scale for i in range(n)]\nmodel = max(values)"


async def call(jp_fetch, method: str, *parts: str, body: object = None, params=None, **kwargs) -> tuple[int, dict]:
    payload = None if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
    try:
        response = await jp_fetch(
            "nb2prod",
            *parts,
            method=method,
            body=payload,
            params=params or {},
            allow_nonstandard_methods=True,
            **kwargs,
        )
    except HTTPClientError as exc:
        assert exc.response is not None, exc
        return exc.code, json.loads(exc.response.body or b"{}")
    return response.code, json.loads(response.body)


def small_notebook(path: Path, train: str | None = None) -> Path:
    cells = [cell(src, *tags) for src, tags in SMALL_CELLS]
    if train is not None:
        cells[2] = cell(train, "train")
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_notebook(path, cells)


async def finished(jp_fetch, job: str) -> dict:
    for _ in range(1200):  # bounded: at most ten minutes
        status, reply = await call(jp_fetch, "GET", "jobs", job)
        assert status == 200, reply
        if reply["state"] != "running":
            return reply
        await asyncio.sleep(0.5)
    raise AssertionError(f"job {job} never finished")


async def train(jp_fetch, path: str, params: dict, engine: str = "python") -> dict:
    status, reply = await call(jp_fetch, "POST", "train", body={"path": path, "params": params, "engine": engine})
    assert status == 202, reply
    return await finished(jp_fetch, reply["job"])


async def test_train_twice_diff_promote_and_roll_back(jp_fetch, jp_root_dir):
    small_notebook(jp_root_dir / "proj" / "small.ipynb")
    first = await train(jp_fetch, "proj/small.ipynb", {"n": 4})
    assert first["state"] == "succeeded", first
    assert first["result"]["params"]["n"] == 4 and first["result"]["overrides"] == ["n"]
    second = await train(jp_fetch, "proj/small.ipynb", {"n": 9, "scale": 0.5})
    assert second["state"] == "succeeded", second
    a, b = first["run_id"], second["run_id"]
    assert a != b

    status, runs = await call(jp_fetch, "GET", "runs", params={"path": "proj/small.ipynb"})
    assert status == 200 and runs["store"] == "proj/runs"
    assert [r["run_id"] for r in runs["runs"]] == [a, b]
    assert runs["runs"][1]["metrics"]["top"] == pytest.approx(max((i**0.5) * 2 * 0.5 for i in range(9)))
    assert sorted(p.name for p in (jp_root_dir / "proj" / "runs").iterdir() if not p.name.startswith(".")) == [a, b]

    status, shown = await call(jp_fetch, "GET", "runs", b, params={"path": "proj/small.ipynb"})
    assert status == 200 and shown["run"]["run_id"] == b and shown["run"]["modified_files"] == []
    status, diff = await call(jp_fetch, "GET", "diff", params={"path": "proj/small.ipynb", "a": a, "b": b})
    assert status == 200
    assert "n" in diff["diff"]["text"] and "scale" in diff["diff"]["text"]

    for run in (b, a):
        status, reply = await call(jp_fetch, "POST", "promote", body={"path": "proj/small.ipynb", "run": run})
        assert status == 200, reply
    alias_file = jp_root_dir / "proj" / "runs" / "aliases" / "production.json"
    assert json.loads(alias_file.read_text())["run_id"] == a
    status, reply = await call(jp_fetch, "POST", "rollback", body={"path": "proj/small.ipynb", "alias": "production"})
    assert status == 200 and reply["change"]["from"] == a and reply["change"]["to"] == b, reply
    assert json.loads(alias_file.read_text())["run_id"] == b
    status, runs = await call(jp_fetch, "GET", "runs", params={"path": "proj/small.ipynb"})
    assert [(h["action"], h["to"]) for h in runs["history"]] == [("promote", b), ("promote", a), ("rollback", b)]
    assert runs["runs"][1]["aliases"] == ["production"]


async def test_bad_parameters_are_refused_before_anything_runs(jp_fetch, jp_root_dir):
    small_notebook(jp_root_dir / "small.ipynb")
    for params, words in (({"nope": 1}, "nope"), ({"n": "many"}, "'n'"), ({"n": 1.5}, "'n'"), ([1], "params")):
        status, reply = await call(jp_fetch, "POST", "train", body={"path": "small.ipynb", "params": params})
        assert status == 400, reply
        assert words in reply["message"], reply
    assert not (jp_root_dir / "runs").exists()


async def test_a_failed_gate_is_a_recorded_run_naming_its_cell(jp_fetch, jp_root_dir):
    small_notebook(jp_root_dir / "small.ipynb")
    job = await train(jp_fetch, "small.ipynb", {"scale": -1.0})  # metrics gate: top must be positive
    assert job["state"] == "failed", job
    assert job["result"]["status"] == "failed-gate"
    assert job["result"]["failure"]["cell"]["notebook_cell"] == 3
    status, reply = await call(jp_fetch, "POST", "promote", body={"path": "small.ipynb", "run": job["run_id"]})
    assert status == 409 and "cannot be promoted" in reply["message"]


async def test_cancel_mid_run_leaves_a_consistent_store(jp_fetch, jp_root_dir):
    small_notebook(jp_root_dir / "slow.ipynb", train=SLOW_TRAIN)
    status, reply = await call(jp_fetch, "POST", "train", body={"path": "slow.ipynb", "engine": "papermill"})
    assert status == 202, reply
    job = reply["job"]
    for _ in range(1200):  # bounded: until the train cell runs
        status, progress = await call(jp_fetch, "GET", "jobs", job)
        current = progress["current"] or {}
        if current.get("cell") == 2:
            break
        assert progress["state"] == "running", progress
        await asyncio.sleep(0.5)
    assert current["role"] == "train" and current["source"] == "for _ in range(1200):", current
    assert progress["elapsed_s"] > 0 and current["run_id"]
    # A second training of the same notebook is refused while this one runs.
    status, refused = await call(jp_fetch, "POST", "train", body={"path": "slow.ipynb"})
    assert status == 409 and job in refused["message"]

    status, cancelled = await call(jp_fetch, "DELETE", "jobs", job)
    assert status == 200 and cancelled["state"] == "cancelled", cancelled
    store = jp_root_dir / "runs"
    assert [p.name for p in store.iterdir() if p.name != ".staging"] == []
    assert list((store / ".staging").iterdir()) == []
    status, again = await call(jp_fetch, "DELETE", "jobs", job)
    assert status == 409 and "already finished" in again["message"]


ENDPOINTS = [
    ("GET", ("runs",), None),
    ("GET", ("runs", "x"), None),
    ("GET", ("diff",), None),
    ("POST", ("train",), {"path": "small.ipynb"}),
    ("POST", ("promote",), {"path": "small.ipynb", "run": "x"}),
    ("POST", ("rollback",), {"path": "small.ipynb"}),
    ("GET", ("jobs", "abc"), None),
    ("DELETE", ("jobs", "abc"), None),
]


@pytest.mark.parametrize(("method", "parts", "body"), ENDPOINTS)
async def test_no_token_is_refused(jp_fetch, jp_root_dir, method, parts, body):
    small_notebook(jp_root_dir / "small.ipynb")
    status, _ = await call(
        jp_fetch, method, *parts, body=body, params={"path": "small.ipynb"}, headers={"Authorization": ""}
    )
    assert status == 403
    assert not (jp_root_dir / "runs").exists()


@pytest.mark.parametrize(("method", "parts", "body"), [e for e in ENDPOINTS if e[1][0] != "jobs"])
async def test_a_store_outside_the_root_is_refused(jp_fetch, jp_root_dir, tmp_path_factory, method, parts, body):
    small_notebook(jp_root_dir / "small.ipynb")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.symlink(elsewhere, jp_root_dir / "link-out")
    for store in ("../outside-store", "link-out", "link-out/runs", "/../outside-store"):
        params = {"path": "small.ipynb", "store": store, "a": "x", "b": "y"}
        status, reply = await call(
            jp_fetch, method, *parts, body={**body, "store": store} if body else None, params=params
        )
        assert status == 403, (store, reply)
        assert "outside the server root" in reply["message"]
    # The default store, `runs/` beside the notebook, as a symlink out of the root.
    os.symlink(elsewhere, jp_root_dir / "runs")
    status, reply = await call(jp_fetch, method, *parts, body=body, params={"path": "small.ipynb", "a": "x", "b": "y"})
    assert status == 403, reply
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize(("method", "parts", "body"), [e for e in ENDPOINTS if e[1][0] != "jobs"])
async def test_a_notebook_outside_the_root_is_refused(jp_fetch, jp_root_dir, method, parts, body):
    small_notebook(jp_root_dir.parent / "outside.ipynb")
    params = {"path": "../outside.ipynb", "a": "x", "b": "y"}
    status, reply = await call(
        jp_fetch, method, *parts, body={**body, "path": "../outside.ipynb"} if body else None, params=params
    )
    assert status == 403, reply


async def test_unknown_runs_jobs_and_aliases(jp_fetch, jp_root_dir):
    small_notebook(jp_root_dir / "small.ipynb")
    status, reply = await call(jp_fetch, "GET", "runs", "20990101T000000Z-abcdef", params={"path": "small.ipynb"})
    assert status == 404 and "not found" in reply["message"]
    status, reply = await call(jp_fetch, "GET", "jobs", "abc123")
    assert status == 404 and "abc123" in reply["message"]
    status, reply = await call(jp_fetch, "POST", "rollback", body={"path": "small.ipynb", "alias": "production"})
    assert status == 400 and "promote a run first" in reply["message"]
    status, reply = await call(jp_fetch, "POST", "promote", body={"path": "small.ipynb", "run": "x", "alias": "a b"})
    assert status == 404 or "not a valid name" in reply["message"]
    status, reply = await call(jp_fetch, "GET", "runs", params={"path": "small.ipynb"})
    assert status == 200 and reply["runs"] == [] and reply["aliases"] == []


@pytest.mark.parametrize("endpoint", ["train", "promote", "rollback"])
async def test_hostile_bodies_are_a_400(jp_fetch, endpoint):
    for body in ("[" * 100_000 + "]" * 100_000, "{not json", "[1]"):
        status, reply = await call(jp_fetch, "POST", endpoint, body=body)
        assert status == 400, reply
        assert "Traceback" not in json.dumps(reply)


async def test_the_panel_follows_the_store_rule_of_the_command_line(jp_fetch, jp_root_dir):
    """The notebook's config `store` (here its project's pyproject.toml) names the store the panel
    lists and trains into, exactly as `nb2prod train NOTEBOOK` resolves it."""
    (jp_root_dir / "team").mkdir()
    (jp_root_dir / "team" / "pyproject.toml").write_text('[tool.nb2prod]\nstore = "shared-runs"\n')
    small_notebook(jp_root_dir / "team" / "notebooks" / "small.ipynb")
    job = await train(jp_fetch, "team/notebooks/small.ipynb", {"n": 2})
    assert job["state"] == "succeeded", job
    status, runs = await call(jp_fetch, "GET", "runs", params={"path": "team/notebooks/small.ipynb"})
    assert status == 200 and runs["store"] == "team/shared-runs"
    assert [r["run_id"] for r in runs["runs"]] == [job["run_id"]]
    assert (jp_root_dir / "team" / "shared-runs" / job["run_id"] / "run.json").is_file()
    assert not (jp_root_dir / "team" / "notebooks" / "runs").exists()
