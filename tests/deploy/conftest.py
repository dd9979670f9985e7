"""Fixtures for the operators' files: builds of both examples, Debian's promtool, and a real
`nb2prod serve` of a small fraud run (python engine) on loopback."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nb2prod import api

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {"fraud": "fraud_detection.ipynb", "churn": "churn.ipynb"}
FAST = ["-p", "n_transactions", "8000", "-p", "n_estimators", "20", "-p", "min_recall", "0", "-p", "min_precision", "0"]


def build_example(root: Path, example: str, overrides: dict[str, Any] | None = None, name: str | None = None) -> Path:
    """The example copied to `root` (as `name`) and built; returns the build folder."""
    root.mkdir(parents=True, exist_ok=True)
    notebook = root / (name or EXAMPLES[example])
    shutil.copy2(REPO / "examples" / example / EXAMPLES[example], notebook)
    return Path(api.build(notebook, overrides=overrides).output_dir)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def nb2prod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def http_post(port: int, path: str, body: Any) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers={"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read().decode() or "null")
    finally:
        conn.close()


class Process:
    """A child process whose stderr is read by a thread (so it never blocks on a full pipe)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines[-40:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.reader.join(10)


def wait_until(predicate, what: str, process: Process | None = None, timeout: float = 300.0, every: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail naming `what` (never a timing assertion:
    the deadline only stops a test that would otherwise hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and not process.alive():
            raise AssertionError(f"{what}: {process.argv[0]} exited: {process.output()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen" + (f": {process.output()}" if process else ""))
        time.sleep(every)
