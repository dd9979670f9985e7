"""Fixtures for the server tests: two real fraud runs, and real uvicorn servers on loopback."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nb2prod import api
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore
from nb2prod.runs.trainer import train_target

REPO = Path(__file__).resolve().parents[2]
SMALL = [("n_transactions", "4000"), ("n_estimators", "10"), ("min_recall", "0"), ("min_precision", "0")]
TRANSACTION = {
    "amount": 12.5,
    "hour": 14,
    "merchant_category": 0,
    "distance_from_home": 1.5,
    "card_present": 1,
    "velocity_1h": 0,
}
RISKY = {
    "amount": 240.0,
    "hour": 3,
    "merchant_category": 8,
    "distance_from_home": 120.0,
    "card_present": 0,
    "velocity_1h": 4,
}


@dataclass(frozen=True)
class FraudRuns:
    store: Path
    build: Path
    a: str  # max_depth 2
    b: str  # max_depth 8


@pytest.fixture(scope="session")
def fraud_runs(tmp_path_factory: pytest.TempPathFactory) -> FraudRuns:
    """The fraud example built and trained twice (python engine), run `a` promoted to production."""
    root = tmp_path_factory.mktemp("fraud")
    notebook = root / "fraud_detection.ipynb"
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", notebook)
    build = Path(api.build(notebook).output_dir)
    store = root / "runs"
    a = train_target(build, [*SMALL, ("max_depth", "2")], engine="python", store=store)
    b = train_target(build, [*SMALL, ("max_depth", "8")], engine="python", store=store)
    assert a.manifest.succeeded and b.manifest.succeeded
    AliasStore(RunStore(store)).promote(a.run_id, "production")
    return FraudRuns(store, build, a.run_id, b.run_id)


@pytest.fixture
def store_copy(fraud_runs: FraudRuns, tmp_path: Path) -> Path:
    """A copy of the runs that a test may promote, roll back and tamper with."""
    target = tmp_path / "runs"
    shutil.copytree(fraud_runs.store, target)
    for path in target.rglob("*"):  # the store freezes runs read-only; a copy must be writable
        path.chmod(path.stat().st_mode | 0o200)
    return target


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


class Server:
    """A real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.app = app
        self.sock = free_socket()
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
    ):
        return call(self.port, method, path, body, headers, raw)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while self.call("GET", "/readyz").status != 200:
            assert time.monotonic() < deadline, f"not ready: {self.call('GET', '/readyz').json}"
            time.sleep(0.1)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def call(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> Answer:
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"content-type": "application/json", **(headers or {})}
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    text = response.read().decode()
    answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, text)
    if connection is None:
        conn.close()
    return answer


@dataclass
class LoadGenerator:
    """A client thread sending /predict requests back to back on one keep-alive connection."""

    port: int
    body: dict[str, Any]
    results: list[tuple[float, int, str | None]] = field(default_factory=list)  # (time, status, run)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set():
            try:
                answer = call(self.port, "POST", "/predict", self.body, connection=conn)
                run = answer.json.get("model", {}).get("run") if answer.status == 200 else None
                self.results.append((time.monotonic(), answer.status, run))
            except (OSError, http.client.HTTPException):
                self.results.append((time.monotonic(), -1, None))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.close()

    def __enter__(self) -> "LoadGenerator":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    def wait_for_run(self, run: str, after: float, timeout: float = 60.0) -> float:
        """Seconds from `after` until the first answer from `run`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for moment, _status, served in list(self.results):
                if moment >= after and served == run:
                    return moment - after
            time.sleep(0.05)
        raise AssertionError(f"no answer from run {run} within {timeout} s")
