"""The nb2prod server extension against a real Jupyter server: each endpoint's answers, and
the refusals (authentication, XSRF, paths outside the root, missing notebooks, bad bodies)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

ENDPOINTS = ["build", "check", "inspect"]


async def post(jp_fetch, endpoint: str, body: object, **kwargs) -> tuple[int, dict]:
    """POST to /nb2prod/ENDPOINT; returns (status, JSON reply) for errors as well."""
    payload = body if isinstance(body, (str, bytes)) else json.dumps(body)
    try:
        response = await jp_fetch("nb2prod", endpoint, method="POST", body=payload, **kwargs)
    except HTTPClientError as exc:
        assert exc.response is not None
        return exc.code, json.loads(exc.response.body or b"{}")
    return response.code, json.loads(response.body)


# --- success ------------------------------------------------------------------------------


async def test_build_writes_the_package_next_to_the_notebook(jp_fetch, fraud_notebook, jp_root_dir):
    status, reply = await post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 200, reply
    assert reply["ok"] is True
    assert reply["path"] == "fraud/fraud_detection.ipynb"
    assert reply["output_path"] == "fraud/build/fraud-detection"
    result = reply["result"]
    assert result["package"] == "fraud_detection"
    output = jp_root_dir / "fraud" / "build" / "fraud-detection"
    assert Path(result["output_dir"]) == output.resolve()
    for name in ("pyproject.toml", "nb2prod.json", "src/fraud_detection/train.py", "job/train.ipynb"):
        assert name in result["files"]
        assert (output / name).is_file()
    # The untagged import the train cell needs is carried along with a note naming its cell.
    assert any(note["severity"] == "note" and note["location"] for note in reply["findings"])


async def test_check_after_build_is_fresh_and_before_is_stale(jp_fetch, fraud_notebook):
    status, before = await post(jp_fetch, "check", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 200 and before["ok"] is False
    assert before["result"]["stale"] is True
    await post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"})
    status, after = await post(jp_fetch, "check", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 200 and after["ok"] is True, after
    assert after["result"]["stale"] is False


async def test_inspect_lists_the_roles(jp_fetch, fraud_notebook):
    status, reply = await post(jp_fetch, "inspect", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 200 and reply["ok"] is True
    text = json.dumps(reply["result"])
    for role in ("parameters", "export", "train", "metrics", "predict", "test"):
        assert role in text


def hold_builds(monkeypatch) -> tuple[threading.Event, threading.Event, list[str], list[int]]:
    """Wrap the real `nb2prod.api.build` so that each call waits for `release` once it has
    started: what the server does meanwhile shows whether builds block it or overlap."""
    from nb2prod import api

    real_build = api.build
    started, release = threading.Event(), threading.Event()
    threads: list[str] = []
    running = [0, 0]  # now, most at once
    guard = threading.Lock()

    def build(*args, **kwargs):
        with guard:
            running[0] += 1
            running[1] = max(running[1], running[0])
            threads.append(threading.current_thread().name)
        started.set()
        try:
            assert release.wait(120), "the test never released the build"
            return real_build(*args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(api, "build", build)
    return started, release, threads, running


async def wait_for(event: threading.Event) -> None:
    for _ in range(6000):  # bounded: at most a minute
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the build never started")


async def test_the_server_answers_while_a_build_runs(jp_fetch, fraud_notebook, monkeypatch):
    started, release, threads, _ = hold_builds(monkeypatch)
    build = asyncio.ensure_future(post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"}))
    await wait_for(started)
    # The build is held in its worker thread; the event loop still serves other requests.
    status = await jp_fetch("api", "status")
    assert status.code == 200
    contents = await jp_fetch("api", "contents", "fraud")
    assert contents.code == 200
    assert not build.done()
    release.set()
    code, reply = await build
    assert code == 200 and reply["ok"]
    assert threads and threads[0].startswith("nb2prod")


async def test_two_builds_of_one_notebook_run_one_after_the_other(jp_fetch, fraud_notebook, jp_root_dir, monkeypatch):
    started, release, threads, running = hold_builds(monkeypatch)
    body = {"path": "fraud/fraud_detection.ipynb"}
    first = asyncio.ensure_future(post(jp_fetch, "build", body))
    await wait_for(started)
    second = asyncio.ensure_future(post(jp_fetch, "build", body))
    # While the first build is held, the second request is served up to the notebook's lock.
    await jp_fetch("api", "status")
    assert len(threads) == 1
    release.set()
    (status_a, a), (status_b, b) = await asyncio.gather(first, second)
    assert status_a == status_b == 200 and a["ok"] and b["ok"]
    assert len(threads) == 2 and running[1] == 1
    assert a["result"]["changed"] is True and b["result"]["changed"] is False
    output = jp_root_dir / "fraud" / "build" / "fraud-detection"
    for name in a["result"]["files"]:
        assert (output / name).is_file(), name
    # Nothing half-written is left beside the output: only the output's lock file (kept, as
    # removing a lock file others may have opened would race).
    assert sorted(p.name for p in output.parent.iterdir()) == [".fraud-detection.lock", "fraud-detection"]
    assert (output.parent / ".fraud-detection.lock").stat().st_size == 0


async def test_builds_of_two_notebooks_can_run_at_once(jp_fetch, fraud_notebook, broken_notebook, monkeypatch):
    started, release, threads, running = hold_builds(monkeypatch)
    first = asyncio.ensure_future(post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"}))
    second = asyncio.ensure_future(post(jp_fetch, "build", {"path": "broken_dependency.ipynb"}))
    for _ in range(6000):
        if len(threads) == 2:
            break
        await asyncio.sleep(0.01)
    assert running[1] == 2  # both held at once: the lock is per notebook
    release.set()
    (_, a), (_, b) = await asyncio.gather(first, second)
    assert a["ok"] is True and b["ok"] is False


# --- findings are an answer, not an HTTP error ----------------------------------------------


async def test_build_of_a_broken_notebook_returns_findings(jp_fetch, broken_notebook, jp_root_dir):
    status, reply = await post(jp_fetch, "build", {"path": "broken_dependency.ipynb"})
    assert status == 200
    assert reply["ok"] is False
    assert reply["error"]["kind"] == "notebook"
    errors = [f for f in reply["findings"] if f["severity"] == "error"]
    assert errors, reply
    first = errors[0]
    assert "load_points" in first["message"]
    assert first["location"]["cell_index"] == 3
    assert first["location"]["cell_id"] == "train"
    assert first["related"]["cell_index"] == 2
    assert not (jp_root_dir / "build").exists()


async def test_check_and_inspect_of_a_broken_notebook_return_findings(jp_fetch, broken_notebook):
    for endpoint in ("check", "inspect"):
        status, reply = await post(jp_fetch, endpoint, {"path": "broken_dependency.ipynb"})
        assert status == 200, (endpoint, reply)
        assert any(f["severity"] == "error" and f["location"]["cell_index"] == 3 for f in reply["findings"]), (
            endpoint,
            reply,
        )


async def test_unreadable_notebook_is_an_input_error(jp_fetch, jp_root_dir):
    shutil.copy(FIXTURES / "invalid_json.ipynb", jp_root_dir / "invalid_json.ipynb")
    status, reply = await post(jp_fetch, "build", {"path": "invalid_json.ipynb"})
    assert status == 200
    assert reply["ok"] is False and reply["error"]["kind"] == "input"
    assert "invalid_json.ipynb" in reply["error"]["message"]


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_no_token_is_refused(jp_fetch, fraud_notebook, jp_root_dir, endpoint):
    status, _ = await post(jp_fetch, endpoint, {"path": "fraud/fraud_detection.ipynb"}, headers={"Authorization": ""})
    assert status == 403
    assert not (jp_root_dir / "fraud" / "build").exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_cookie_login_needs_the_xsrf_header(jp_fetch, jp_serverapp, fraud_notebook, endpoint):
    # Log in as a browser does: the login form sets the _xsrf and login cookies.
    login = await jp_fetch("login", headers={"Authorization": ""})
    xsrf = login.headers.get_list("Set-Cookie")
    cookies = {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0] for c in xsrf}
    form = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": cookies["_xsrf"]})
    try:
        await jp_fetch(
            "login",
            method="POST",
            body=form,
            follow_redirects=False,
            headers={"Authorization": "", "Cookie": f"_xsrf={cookies['_xsrf']}"},
        )
    except HTTPClientError as exc:  # the redirect after a successful login
        assert exc.code == 302
        for cookie in exc.response.headers.get_list("Set-Cookie"):
            name, value = cookie.split(";", 1)[0].split("=", 1)
            cookies[name] = value
    cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    assert any(name.startswith("username-") for name in cookies), cookies

    body = {"path": "fraud/fraud_detection.ipynb"}
    status, _ = await post(jp_fetch, endpoint, body, headers={"Authorization": "", "Cookie": cookie_header})
    assert status == 403
    # The same cookies with the XSRF header are accepted: the 403 was the missing header.
    status, reply = await post(
        jp_fetch,
        endpoint,
        body,
        headers={"Authorization": "", "Cookie": cookie_header, "X-XSRFToken": cookies["_xsrf"]},
    )
    assert status == 200, reply


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("path", ["../outside.ipynb", "fraud/../../outside.ipynb", "/../outside.ipynb"])
async def test_dotdot_escape_is_refused(jp_fetch, jp_root_dir, fraud_notebook, endpoint, path):
    outside = jp_root_dir.parent / "outside.ipynb"
    shutil.copy(fraud_notebook, outside)
    status, reply = await post(jp_fetch, endpoint, {"path": path})
    assert status == 403, reply
    assert "outside the server root" in reply["message"]
    assert not (jp_root_dir.parent / "build").exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_symlink_escape_is_refused(jp_fetch, jp_root_dir, fraud_notebook, endpoint, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(fraud_notebook, elsewhere / "secret.ipynb")
    os.symlink(elsewhere / "secret.ipynb", jp_root_dir / "link.ipynb")
    os.symlink(elsewhere, jp_root_dir / "linkdir")
    for path in ("link.ipynb", "linkdir/secret.ipynb"):
        status, reply = await post(jp_fetch, endpoint, {"path": path})
        assert status == 403, (path, reply)
    assert not (elsewhere / "build").exists()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_missing_notebook_is_404(jp_fetch, jp_root_dir, endpoint):
    status, reply = await post(jp_fetch, endpoint, {"path": "nope/missing.ipynb"})
    assert status == 404
    assert "nope/missing.ipynb" in reply["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    "body", ["{not json", "[1, 2]", json.dumps({}), json.dumps({"path": 3}), json.dumps({"path": ""})]
)
async def test_malformed_body_is_400(jp_fetch, endpoint, body):
    status, reply = await post(jp_fetch, endpoint, body)
    assert status == 400
    assert "path" in reply["message"] or "JSON" in reply["message"]


async def test_build_output_outside_the_root_is_refused(jp_fetch, jp_root_dir, fraud_notebook, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    notebook = json.loads(fraud_notebook.read_text())
    notebook["metadata"]["nb2prod"]["output"] = str(elsewhere / "out")
    fraud_notebook.write_text(json.dumps(notebook))
    status, reply = await post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 403, reply
    assert "outside the server root" in reply["message"]
    assert not (elsewhere / "out").exists()


async def test_build_through_a_symlinked_build_folder_is_refused(
    jp_fetch, jp_root_dir, fraud_notebook, tmp_path_factory
):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.symlink(elsewhere, fraud_notebook.parent / "build")
    status, reply = await post(jp_fetch, "build", {"path": "fraud/fraud_detection.ipynb"})
    assert status == 403, reply
    assert list(elsewhere.iterdir()) == []


async def test_a_hand_edit_blocks_the_build_until_a_forced_rebuild(jp_fetch, fraud_notebook, jp_root_dir):
    body = {"path": "fraud/fraud_detection.ipynb"}
    status, reply = await post(jp_fetch, "build", body)
    assert status == 200 and reply["ok"], reply
    edited = jp_root_dir / "fraud" / "build" / "fraud-detection" / "src" / "fraud_detection" / "train.py"
    generated = edited.read_text()
    edited.write_text(generated + "# my change\n")
    status, reply = await post(jp_fetch, "build", body)
    assert status == 200 and reply["ok"] is False and reply["error"]["kind"] == "output-conflict", reply
    # The message names the file as JupyterLab shows it: relative to the root.
    assert "fraud/build/fraud-detection/src/fraud_detection/train.py was edited by hand" in reply["error"]["message"]
    assert str(jp_root_dir.resolve()) not in reply["error"]["message"]
    assert edited.read_text().endswith("# my change\n")
    status, reply = await post(jp_fetch, "build", {**body, "force": "yes"})
    assert status == 400 and "force" in reply["message"]
    status, reply = await post(jp_fetch, "build", {**body, "force": True})
    assert status == 200 and reply["ok"] is True, reply
    assert edited.read_text() == generated
