"""The prediction log: written off the request path, rotated by size and day, read back by time and window."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

from nb2prod.serve import ServeOptions, create_app
from nb2prod.serve.shipped.predlog import FIELDS, BackgroundWriter, PredictionLog, iter_records, log_files

from .conftest import RISKY, TRANSACTION, Server


def test_the_server_logs_every_prediction(fraud_runs, tmp_path):
    folder = tmp_path / "log"
    with Server(create_app(fraud_runs.store, "production", ServeOptions(log_dir=str(folder)))) as server:
        server.wait_ready()
        first = server.call("POST", "/predict", {"instances": [TRANSACTION, RISKY]}).json
        second = server.call("POST", "/predict", {"instances": [RISKY]}).json
        assert server.call("POST", "/predict", {"instances": [{**TRANSACTION, "amount": "x"}]}).status == 422
    records = list(iter_records(folder))  # the server stopped: the writer flushed everything
    assert [r["id"] for r in records] == first["ids"] + second["ids"]
    assert all(tuple(sorted(r)) == tuple(sorted(FIELDS)) for r in records)
    assert records[0]["inputs"] == TRANSACTION and records[1]["inputs"] == RISKY
    assert [r["output"] for r in records] == first["predictions"] + second["predictions"]
    assert {r["run"] for r in records} == {fraud_runs.a} and records[0]["alias"] == "production"
    assert records[0]["model_sha256"] == first["model"]["sha256"] and records[0]["latency_ms"] > 0
    assert records[0]["request_id"] == records[1]["request_id"] == first["request_id"]
    assert datetime.fromisoformat(records[0]["time"]).tzinfo is not None
    assert list(iter_records(folder, window=1)) == records[-1:]
    assert list(iter_records(folder, since=timedelta(hours=1))) == records
    assert list(iter_records(folder, since=datetime.now(timezone.utc) + timedelta(seconds=1))) == []


def _event(n: int, time: str, request: str = "r") -> dict:
    return {
        "request_id": request,
        "time": time,
        "run": "run-1",
        "alias": None,
        "model_sha256": "0" * 64,
        "latency_ms": 1.0,
        "ids": [f"{request}-{i}" for i in range(n)],
        "inputs": [{"x": i} for i in range(n)],
        "outputs": [i * 0.5 for i in range(n)],
    }


def test_files_rotate_by_size_and_day(tmp_path):
    from nb2prod.serve.shipped.predlog import prediction_records

    log = PredictionLog(tmp_path, max_bytes=600)
    log.write(prediction_records(_event(10, "2026-03-01T23:59:59.000000+00:00", "a")))
    log.write(prediction_records(_event(2, "2026-03-02T00:00:01.000000+00:00", "b")))
    log.close()
    names = [p.name for p in log_files(tmp_path)]
    day1 = [n for n in names if n.startswith("predictions-20260301-")]
    assert len(day1) >= 3 and all(n.startswith("predictions-20260302-") for n in names[len(day1) :])
    assert all((tmp_path / n).stat().st_size < 600 + 300 for n in names)
    records = list(iter_records(tmp_path))
    assert [r["id"] for r in records] == [f"a-{i}" for i in range(10)] + ["b-0", "b-1"]
    assert [r["id"] for r in iter_records(tmp_path, since="2026-03-02T00:00:00+00:00")] == ["b-0", "b-1"]
    # a torn last line (a crash mid-write) is skipped, the rest still reads
    with open(tmp_path / names[-1], "a") as handle:
        handle.write('{"id": "torn')
    assert len(list(iter_records(tmp_path))) == 12
    # a new writer appends to the day's last file rather than overwriting it
    again = PredictionLog(tmp_path, max_bytes=10_000)
    again.write(prediction_records(_event(1, "2026-03-02T00:00:02.000000+00:00", "c")))
    again.close()
    assert [p.name for p in log_files(tmp_path)] == names


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path):
    release = threading.Event()
    seen: list = []

    def slow_observer(records: list) -> None:
        release.wait(10)
        seen.extend(records)

    writer = BackgroundWriter(PredictionLog(tmp_path), [slow_observer], queue_size=2)
    accepted = [writer.submit(_event(3, "2026-03-01T10:00:00.000000+00:00", f"r{i}")) for i in range(6)]
    # two fit in the queue (a third when the writer already holds one); the rest are dropped at once
    assert accepted[:2] == [True, True] and accepted[3:] == [False, False, False]
    assert writer.dropped == 3 * accepted.count(False)
    release.set()
    writer.close()
    assert len(seen) == 3 * accepted.count(True) and writer.written == len(seen)


def test_sampling_logs_a_share_of_requests_and_observers_see_all(tmp_path):
    seen: list = []
    writer = BackgroundWriter(PredictionLog(tmp_path), [seen.extend], sample=0.0)
    writer.submit(_event(2, "2026-03-01T10:00:00.000000+00:00"))
    writer.close()
    assert len(seen) == 2 and writer.written == 0 and list(iter_records(tmp_path)) == []
    assert json.dumps(seen[0])  # observers get the log's records
