"""`nb2prod serve` and the generated package's NAME-serve as users run them: real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from nb2prod.runs.store import RunStore

from .conftest import RISKY, TRANSACTION, call

SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")


class Process:
    """A server process whose stderr is collected by a thread; its port read from the log."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def port(self, timeout: float = 120.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := SERVING.search(line):
                    return int(match.group(1))
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError("no 'serving on' line: " + "".join(self.lines))

    def wait_for(self, port: int, path: str, predicate, timeout: float = 180.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = call(port, "GET", path)
            if predicate(answer):
                return answer
            time.sleep(0.1)
        raise AssertionError(f"{path} never matched: {call(port, 'GET', path).text} {''.join(self.lines)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.reader.join(10)
        return code


def test_nb2prod_serve_follows_sighup_after_a_refused_target(fraud_runs, store_copy):
    """A tampered target is refused; once repaired, SIGHUP makes the server try it again."""
    notebook = fraud_runs.build.parent.parent / "fraud_detection.ipynb"
    server = Process(
        [
            sys.executable,
            "-m",
            "nb2prod",
            "serve",
            str(notebook),
            "--store",
            str(store_copy),
            "--port",
            "0",
            "--reload-interval",
            "3600",
        ]
    )
    try:
        port = server.port()
        server.wait_for(port, "/readyz", lambda a: a.status == 200)
        first = call(port, "POST", "/predict", {"instances": [TRANSACTION, RISKY]})
        assert first.status == 200 and first.json["model"]["run"] == fraud_runs.a

        manifest = RunStore(store_copy).load(fraud_runs.b).manifest
        model_file = store_copy / fraud_runs.b / manifest.model.file
        original = model_file.read_bytes()
        model_file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        alias = store_copy / "aliases" / "production.json"
        state = json.loads(alias.read_text())
        alias.write_text(json.dumps({**state, "run_id": fraud_runs.b}))
        meta = server.wait_for(port, "/metadata", lambda a: a.json["reload_error"] is not None).json
        assert meta["run"] == fraud_runs.a and meta["reload_error"]["run"] == fraud_runs.b

        model_file.write_bytes(original)  # repaired: only a signal makes the server look again
        time.sleep(1.0)
        assert call(port, "GET", "/metadata").json["run"] == fraud_runs.a
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for(port, "/metadata", lambda a: a.json["run"] == fraud_runs.b)
        assert call(port, "POST", "/predict", {"instances": [TRANSACTION]}).json["model"]["run"] == fraud_runs.b
    finally:
        code = server.stop()
    log = "".join(server.lines)
    assert code in (0, -signal.SIGTERM) and "Traceback" not in log  # uvicorn re-raises the signal after a graceful stop
    assert f"reload refused: run {fraud_runs.b}" in log and "still serving run " + fraud_runs.a in log
    assert f"reload: run {fraud_runs.b} swapped in for run {fraud_runs.a}" in log
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ nb2prod\.serve INFO serving run ", log, re.M)


def test_usage_errors_are_one_sentence_and_exit_2(fraud_runs, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "NO_SUCH_TOKEN_VAR"}
    unknown = subprocess.run(
        [sys.executable, "-m", "nb2prod", "serve", str(fraud_runs.store), "--model", "nosuch", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert unknown.returncode == 2 and "nosuch" in unknown.stderr and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip().splitlines()[0] == f"store: {fraud_runs.store} (from the command line)"
    assert len(unknown.stderr.strip().splitlines()) == 2  # the store it looked in, then one sentence
    token = subprocess.run(
        [sys.executable, "-m", "nb2prod", "serve", str(fraud_runs.store), "--token-env", "NO_SUCH_TOKEN_VAR"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert token.returncode == 2 and "NO_SUCH_TOKEN_VAR" in token.stderr and "Traceback" not in token.stderr


def test_the_generated_package_serves_the_same_scores(fraud_runs, tmp_path):
    """NAME-serve from the package's own code (its _serve/ and _runtime), beside `nb2prod predict`."""
    from nb2prod.runs.predicting import predict_rows

    env = {**os.environ, "PYTHONPATH": str(fraud_runs.build / "src")}
    server = Process(
        [
            sys.executable,
            "-m",
            "fraud_detection.serve",
            str(fraud_runs.store),
            "--port",
            "0",
            "--log",
            str(tmp_path / "log"),
        ],
        env=env,
    )
    try:
        port = server.port()
        server.wait_for(port, "/readyz", lambda a: a.status == 200)
        served = call(port, "POST", "/predict", {"instances": [TRANSACTION, RISKY]})
        assert served.status == 200 and served.json["model"]["run"] == fraud_runs.a
        assert served.json["predictions"] == predict_rows(
            RunStore(fraud_runs.store), "production", [TRANSACTION, RISKY]
        )
        refused = call(port, "POST", "/predict", {"instances": [{**TRANSACTION, "amount": "abc"}]})
        assert refused.status == 422 and (refused.json["field"], refused.json["rule"]) == ("amount", "not-a-number")
        meta = call(port, "GET", "/metadata").json
        assert meta["code"] == "package fraud_detection" and meta["run"] == fraud_runs.a
        assert call(port, "GET", "/v2/models/fraud-detection").status == 200
    finally:
        code = server.stop()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in "".join(server.lines)
    logged = [json.loads(line) for p in sorted((tmp_path / "log").iterdir()) for line in p.read_text().splitlines()]
    assert [r["id"] for r in logged] == served.json["ids"]


def test_workers_are_processes_each_with_its_own_model(fraud_runs):
    server = Process([sys.executable, "-m", "nb2prod", "serve", str(fraud_runs.store), "--port", "0", "--workers", "2"])
    try:
        port = server.port()
        deadline = time.monotonic() + 300
        while "".join(server.lines).count("serving run ") < 2:  # one line per worker process
            assert time.monotonic() < deadline and server.proc.poll() is None, "".join(server.lines)
            time.sleep(0.2)
        answers = [call(port, "POST", "/predict", {"instances": [TRANSACTION]}) for _ in range(6)]
        assert {a.status for a in answers} == {200} and len({a.json["predictions"][0] for a in answers}) == 1
        assert call(port, "GET", "/metadata").json["workers"] == 2
    finally:
        code = server.stop()
    assert code in (0, -signal.SIGTERM) and "Traceback" not in "".join(server.lines)
    assert "with 2 workers" in "".join(server.lines)
