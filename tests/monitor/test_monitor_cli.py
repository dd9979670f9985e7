"""`nb2prod monitor` and `nb2prod feedback` as users run them, against a real `nb2prod serve` process
on loopback: the live-gate alarm shows (exit 1) from the server's /metadata and /metrics and from its
log folder alone."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.monitor.conftest import REPO, cli
from tests.serve.conftest import RISKY, TRANSACTION, call
from tests.serve.test_cli_serve import Process

GATED = ["-p", "n_transactions", "4000", "-p", "n_estimators", "10", "-p", "max_depth", "4"]
GATED += ["-p", "min_recall", "0.3", "-p", "min_precision", "0"]


@pytest.fixture(scope="module")
def gated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud example trained with its recall gate at 0.3, promoted to production."""
    root = tmp_path_factory.mktemp("monitor-cli")
    notebook = root / "fraud_detection.ipynb"
    notebook.write_bytes((REPO / "examples" / "fraud" / "fraud_detection.ipynb").read_bytes())
    store = root / "runs"
    trained = cli("train", str(notebook), "--engine", "python", "--store", str(store), *GATED)
    assert trained.returncode == 0, trained.stderr
    (run_id,) = [p.name for p in store.iterdir() if p.name[0].isdigit()]
    promoted = cli("promote", run_id, "--store", str(store))
    assert promoted.returncode == 0, promoted.stderr
    return store


def wait_remembered(port: int, n: int) -> None:
    deadline = time.monotonic() + 60
    while call(port, "GET", "/metadata").json["monitoring"]["live"]["remembered"] < n:
        assert time.monotonic() < deadline, "the monitor never saw the predictions"
        time.sleep(0.05)


def test_monitor_shows_the_live_gate_alarm_from_the_server_and_from_its_log(gated_store: Path, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    server = Process(
        [sys.executable, "-m", "nb2prod", "serve", str(gated_store), "--port", "0", "--log-dir", str(log_dir)]
        + ["--feedback-min-labels", "20"]
    )
    try:
        port = server.port()
        server.wait_for(port, "/readyz", lambda a: a.status == 200)
        url = f"http://127.0.0.1:{port}"
        rows = [{**RISKY, "amount": RISKY["amount"] + i} for i in range(10)]
        rows += [{**TRANSACTION, "amount": TRANSACTION["amount"] + i / 10} for i in range(40)]
        answer = call(port, "POST", "/predict", {"instances": rows}).json
        ids = answer["ids"]
        wait_remembered(port, 50)

        before = cli("monitor", "production", "--url", url, "--format", "json")
        metadata = call(port, "GET", "/metadata").json
        assert before.returncode == (1 if metadata["alarms"] else 0), before.stdout + before.stderr
        summary = json.loads(before.stdout)
        assert summary["run"] == metadata["run"] and summary["model_sha256"] == metadata["model_sha256"]
        assert summary["traffic"] == {"requests": 1, "errors": 0}
        assert summary["latency"]["p50_ms"] > 0 and summary["latency"]["p99_ms"] >= summary["latency"]["p50_ms"]
        assert summary["live"]["labelled"] == 0

        # 30 of the 40 transactions the model passed were fraud: live recall 0.25, below its 0.3 gate
        labels = [1] * 40 + [0] * 10
        sent = call(port, "POST", "/feedback", [{"id": p, "label": y} for p, y in zip(ids, labels)])
        assert sent.json == {"matched": 50, "unmatched": []}

        shown = cli("monitor", "production", "--url", url)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        text = shown.stdout
        assert f"run {metadata['run']} (production), model sha256 {metadata['model_sha256']}" in text
        assert "traffic: 1 requests, 0 errors" in text
        assert "recall >= 0.3: FAILING (live 0.25)" in text
        assert "live-gate: firing since" in text
        drift_shown = "drift: not monitored" in text
        assert drift_shown == ("drift" not in metadata["monitoring"])

        as_json = json.loads(cli("monitor", "production", "--url", url, "--format", "json").stdout)
        server_live = as_json["live"]
        assert "live-gate" in [a["name"] for a in as_json["alarms"]]
    finally:
        server.stop()
    assert any("alarm live-gate firing" in line for line in server.lines), "".join(server.lines)

    # the server is gone: the log folder alone gives the same live metrics and the same alarm
    offline = cli("monitor", "production", "--log-dir", str(log_dir), "--store", str(gated_store))
    assert offline.returncode == 1, offline.stdout + offline.stderr
    assert "recall >= 0.3: FAILING (live 0.25)" in offline.stdout and "live-gate: firing" in offline.stdout
    assert "errors not in the prediction log" in offline.stdout
    data = json.loads(
        cli("monitor", "production", "--log-dir", str(log_dir), "--store", str(gated_store), "--format", "json").stdout
    )
    assert data["live"]["metrics"] == pytest.approx(server_live["metrics"])
    assert data["traffic"]["requests"] == 1 and data["traffic"]["predictions"] == 50
    assert data["drift"]["rows"] == 50 and {f["feature"] for f in data["drift"]["features"]} >= {"amount", "hour"}
    assert data["run"] == metadata["run"]


def test_monitor_and_feedback_refuse_bad_input_in_one_sentence(gated_store: Path, tmp_path: Path) -> None:
    neither = cli("monitor", "production", "--store", str(gated_store))
    assert neither.returncode == 2 and "needs --url" in neither.stderr and "Traceback" not in neither.stderr

    unreachable = cli("monitor", "production", "--url", "http://127.0.0.1:9")
    assert unreachable.returncode == 2 and "cannot reach the server" in unreachable.stderr

    labels = tmp_path / "labels.csv"
    labels.write_text("prediction,label\nabc-0,1\n")
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    (log_dir / "predictions-20261201-0000.jsonl").write_text(
        json.dumps({"id": "abc-0", "run": "x", "output": 0.9, "inputs": {}, "time": "2026-12-01T00:00:00+00:00"}) + "\n"
    )
    missing = cli("feedback", "production", str(labels), "--log-dir", str(log_dir), "--store", str(gated_store))
    assert missing.returncode == 2, missing.stderr
    assert (
        len([x for x in missing.stderr.strip().splitlines() if not x.startswith("store: ")]) == 1
        and "no column 'id'" in missing.stderr
        and "--id-column" in missing.stderr
    )
    assert not list(log_dir.glob("feedback-*.jsonl"))  # nothing written on bad input

    labels.write_text("id,label\nabc-0,1\nabc-1,\n")
    empty = cli("feedback", "production", str(labels), "--log-dir", str(log_dir), "--store", str(gated_store))
    assert empty.returncode == 2 and "row 3 has no 'label'" in empty.stderr
    assert not list(log_dir.glob("feedback-*.jsonl"))

    labels.write_text("id,label\nabc-0,1\n")
    no_log = cli(
        "feedback", "production", str(labels), "--log-dir", str(tmp_path / "nope"), "--store", str(gated_store)
    )
    assert no_log.returncode == 2 and "no prediction log folder" in no_log.stderr
