"""Live drift in the server: real uvicorn servers and `nb2prod serve` on loopback serving the fraud
example's runs, traffic made by the example's own generator, a real HTTP server recording the
webhook's calls, and `nb2prod drift` on the server's prediction log as the reference."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore
from nb2prod.serve import ServeOptions, create_app

from .conftest import Server, call
from .test_cli_serve import Process


class Hook:
    """A real HTTP server on loopback recording the JSON bodies posted to it."""

    def __init__(self) -> None:
        calls: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                calls.append({"path": self.path, "type": self.headers.get("content-type"), **json.loads(body)})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.calls = calls
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drift?team=fraud"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Hook":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"{len(self.calls)} webhook calls, expected {count}"
            time.sleep(0.05)
        return list(self.calls)


@pytest.fixture(scope="module")
def traffic(fraud_runs):
    """`traffic(n, seed, shifted=False)`: request records from the notebook's own generator;
    shifted: amounts x1.6 and card_present flipped."""
    src = str(fraud_runs.build / "src")
    sys.path.insert(0, src)
    try:
        from fraud_detection.core import RAW_COLUMNS, make_transactions
    finally:
        sys.path.remove(src)

    def make(n: int, seed: int, shifted: bool = False) -> list[dict[str, Any]]:
        frame = make_transactions(n, 0.02, seed)[RAW_COLUMNS].copy()
        if shifted:
            frame["amount"] = frame["amount"] * 1.6
            frame["card_present"] = 1 - frame["card_present"]
        return json.loads(frame.to_json(orient="records"))

    return make


def send(port: int, rows: list[dict[str, Any]], batch: int = 50) -> None:
    for start in range(0, len(rows), batch):
        answer = call(port, "POST", "/predict", {"instances": rows[start : start + batch]})
        assert answer.status == 200, answer.text


def drift_state(port: int, observed: int | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """/metadata once the monitor has observed `observed` rows (the writer thread is behind the
    answers)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = call(port, "GET", "/metadata").json
        if observed is None or meta["monitoring"]["drift"]["observed"] >= observed:
            return meta
        assert time.monotonic() < deadline, meta["monitoring"]["drift"]
        time.sleep(0.05)


def gauges(port: int) -> dict[str, float]:
    text = call(port, "GET", "/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(nb2prod_drift\S*) (\S+)$", text, re.M)}


def by_feature(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["feature"]: f for f in meta["monitoring"]["drift"]["features"]}


def test_shifted_traffic_fires_the_alarm_once_and_normal_traffic_clears_it(
    fraud_runs, traffic, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="nb2prod.serve")
    with Hook() as hook:
        options = ServeOptions(drift_webhook=hook.url, log_dir=str(tmp_path / "log"))
        with Server(create_app(fraud_runs.store, "production", options)) as server:
            server.wait_ready()
            send(server.port, traffic(600, 101))
            normal = drift_state(server.port, 600)
            drift = normal["monitoring"]["drift"]
            assert (drift["status"], drift["run"], drift["window"], drift["alpha"]) == ("ok", fraud_runs.a, 500, 0.001)
            assert drift["rows"] == 500 and drift["evaluated_rows"] == 500 and drift["alarm"] is False
            features = by_feature(normal)
            assert set(features) == {
                "amount",
                "hour",
                "merchant_category",
                "distance_from_home",
                "card_present",
                "velocity_1h",
                "score",
            }
            assert features["amount"]["test"] == "ks" and features["card_present"]["test"] == "chi2"
            assert features["score"]["section"] == "score" and features["amount"]["section"] == "input"
            assert not any(f["drifted"] for f in features.values()) and normal["alarms"] == []
            before = gauges(server.port)
            assert before["nb2prod_drift_alarm"] == 0 and before["nb2prod_drift_window_rows"] == 500
            assert before["nb2prod_drift_alarm_changes_total"] == 0
            assert before['nb2prod_drift_pvalue{section="input",feature="amount"}'] > 0.001
            assert hook.calls == []

            send(server.port, traffic(500, 202, shifted=True))
            shifted = drift_state(server.port, 1100)
            features = by_feature(shifted)
            assert features["amount"]["drifted"] and features["card_present"]["drifted"]
            assert not features["merchant_category"]["drifted"] and not features["distance_from_home"]["drifted"]
            assert shifted["monitoring"]["drift"]["alarm"] is True
            (alarm,) = shifted["alarms"]
            assert alarm["name"] == "drift" and alarm["state"] == "firing" and alarm["run"] == fraud_runs.a
            assert alarm["since"] == shifted["monitoring"]["drift"]["changed_at"]
            assert alarm["reason"].startswith("amount (p=") and "card_present (p=" in alarm["reason"]
            after = gauges(server.port)
            assert after["nb2prod_drift_alarm"] == 1 and after["nb2prod_drift_alarm_changes_total"] == 1
            amount = '{section="input",feature="amount"}'
            assert after["nb2prod_drift_pvalue" + amount] < 0.001 < before["nb2prod_drift_pvalue" + amount]
            assert after["nb2prod_drift_psi" + amount] > before["nb2prod_drift_psi" + amount]
            (fired,) = hook.wait_for(1)
            assert fired["path"] == "/hooks/drift?team=fraud" and fired["type"] == "application/json"
            assert (fired["alarm"], fired["state"], fired["run"]) == ("drift", "firing", fraud_runs.a)
            assert fired["model_sha256"] == shifted["model_sha256"] and fired["time"] == alarm["since"]
            named = {f["feature"] for f in fired["features"]}  # what drifted when the alarm fired
            assert named and named <= {"amount", "card_present", "score"}

            send(server.port, traffic(300, 303, shifted=True))  # still drifted: no new call
            assert drift_state(server.port, 1400)["monitoring"]["drift"]["changes"] == 1
            send(server.port, traffic(500, 404))
            cleared = drift_state(server.port, 1900)
            assert cleared["monitoring"]["drift"]["alarm"] is False and cleared["alarms"] == []
            assert cleared["monitoring"]["drift"]["changes"] == 2
            calls = hook.wait_for(2)
            assert gauges(server.port)["nb2prod_drift_alarm"] == 0
    assert [c["state"] for c in calls] == ["firing", "cleared"] and calls[1]["features"] == []
    messages = [r.getMessage() for r in caplog.records if "drift alarm" in r.getMessage()]
    assert len(messages) == 2
    named = ", ".join(sorted(named, key=list(features).index))
    assert re.fullmatch(r"drift alarm firing: (\w+ \(p=[0-9.e-]+, psi=[0-9.e-]+\)(, )?)+", messages[0])
    assert re.sub(r" \(p=[^)]*\)", "", messages[0]) == f"drift alarm firing: {named}"
    assert messages[1] == "drift alarm cleared"


def test_live_statistics_equal_nb2prod_drift_on_the_logged_rows(fraud_runs, traffic, tmp_path: Path) -> None:
    log = tmp_path / "log"
    options = ServeOptions(log_dir=str(log), drift_window=300, drift_every=50)
    rows = traffic(250, 505) + traffic(150, 606, shifted=True)  # a window half shifted
    with Server(create_app(fraud_runs.store, "production", options)) as server:
        server.wait_ready()
        send(server.port, rows)
        meta = drift_state(server.port, 400)
    live = by_feature(meta)
    assert meta["monitoring"]["drift"]["evaluated_rows"] == 300
    offline = subprocess.run(
        [sys.executable, "-m", "nb2prod", "drift", "production", str(log), "--store", str(fraud_runs.store)]
        + ["--window", "300", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert offline.returncode in (0, 1), offline.stderr
    report = json.loads(offline.stdout)
    assert report["rows"] == 300 and report["run_id"] == fraud_runs.a
    columns = {c["name"]: c for c in report["columns"]}
    assert set(columns) == set(live)
    for name, column in columns.items():
        mine = live[name]
        assert mine["test"] == column["test"] and mine["rows"] == column["n_current"], name
        assert mine["statistic"] == pytest.approx(column["statistic"], rel=1e-9), name
        assert mine["pvalue"] == pytest.approx(column["p_adjusted"], rel=1e-8, abs=1e-300), name
        assert mine["pvalue_raw"] == pytest.approx(column["p_value"], rel=1e-8, abs=1e-300), name
        assert mine["psi"] == pytest.approx(column["psi"], rel=1e-9), name
        assert mine["drifted"] == column["drifted"], name
    assert report["drift"] == meta["monitoring"]["drift"]["alarm"] is True
    assert 0 < len(report["drifted"]) < len(columns)  # drifted and quiet columns both compared


def test_a_reload_to_another_run_clears_the_alarm_and_starts_an_empty_window(
    fraud_runs, store_copy: Path, traffic
) -> None:
    options = ServeOptions(drift_window=200, drift_every=50, reload_interval=0.2)
    with Server(create_app(store_copy, "production", options)) as server:
        server.wait_ready()
        send(server.port, traffic(200, 707, shifted=True))
        firing = drift_state(server.port, 200)["monitoring"]["drift"]
        assert firing["alarm"] is True and firing["run"] == fraud_runs.a and firing["rows"] == 200
        AliasStore(RunStore(store_copy)).promote(fraud_runs.b, "production")
        deadline = time.monotonic() + 120
        while (meta := call(server.port, "GET", "/metadata").json)["run"] != fraud_runs.b:
            assert time.monotonic() < deadline, meta
            time.sleep(0.1)
        drift = meta["monitoring"]["drift"]
        assert (drift["run"], drift["rows"], drift["features"], drift["alarm"]) == (fraud_runs.b, 0, [], False)
        assert drift["changes"] == 2 and meta["alarms"] == []
        assert gauges(server.port)["nb2prod_drift_window_rows"] == 0
        send(server.port, traffic(100, 808))
        again = drift_state(server.port, 300)["monitoring"]["drift"]
        assert again["run"] == fraud_runs.b and again["rows"] == 100 and again["alarm"] is False


def test_a_run_without_a_baseline_is_served_and_reported_without_drift(fraud_runs, store_copy: Path, traffic) -> None:
    run = RunStore(store_copy).get(fraud_runs.b)  # made like a run trained before baselines existed
    (run.path / "baseline.json").unlink()
    record = json.loads((run.path / "run.json").read_text())
    del record["files"]["baseline.json"]
    (run.path / "run.json").write_text(json.dumps(record, indent=1))
    with Server(create_app(store_copy, fraud_runs.b, ServeOptions(drift_every=10))) as server:
        server.wait_ready()
        send(server.port, traffic(100, 909, shifted=True))
        meta = drift_state(server.port)
        drift = meta["monitoring"]["drift"]
        assert meta["run"] == fraud_runs.b and drift["status"] == "no baseline"
        assert drift["features"] == [] and drift["alarm"] is False and meta["alarms"] == []
        assert gauges(server.port) == {}


def test_no_drift_turns_the_monitor_off(fraud_runs, traffic) -> None:
    with Server(create_app(fraud_runs.store, "production", ServeOptions(drift=False))) as server:
        server.wait_ready()
        send(server.port, traffic(50, 1))
        meta = call(server.port, "GET", "/metadata").json
        assert "drift" not in meta["monitoring"] and gauges(server.port) == {}


def test_nb2prod_serve_refuses_a_webhook_that_is_not_http_in_one_sentence(fraud_runs) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nb2prod", "serve", str(fraud_runs.store), "--port", "0"]
        + ["--drift-webhook", "file:///etc/passwd"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--drift-webhook 'file:///etc/passwd': expected an http:// or https:// URL" in result.stderr


def test_the_packages_own_server_monitors_drift_and_calls_the_webhook(fraud_runs, traffic, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(fraud_runs.build / "src")}
    with Hook() as hook:
        server = Process(
            [sys.executable, "-m", "fraud_detection.serve", str(fraud_runs.store), "--port", "0"]
            + ["--drift-window", "200", "--drift-alpha", "0.01", "--drift-webhook", hook.url],
            env=env,
        )
        try:
            port = server.port()
            server.wait_for(port, "/readyz", lambda a: a.status == 200)
            send(port, traffic(200, 111, shifted=True))
            meta = drift_state(port, 200)
            (fired,) = hook.wait_for(1)
        finally:
            code = server.stop()
    drift = meta["monitoring"]["drift"]
    assert meta["code"] == "package fraud_detection" and drift["window"] == 200 and drift["alpha"] == 0.01
    assert drift["alarm"] is True and by_feature(meta)["amount"]["drifted"]
    assert fired["state"] == "firing" and fired["run"] == fraud_runs.a
    assert code in (0, -15) and "Traceback" not in "".join(server.lines)
    assert any("drift alarm firing: amount (p=" in line for line in server.lines)
