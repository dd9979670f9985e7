"""Benchmark the server's per-request cost of live drift: the same run served twice by
`nb2prod serve`, once with the drift window (the default) and once with `--no-drift`, requests
sent in pairs (one to each server, the order alternating) so both see the same machine load.

    python benchmarks/drift_overhead_bench.py              # print the table
    python benchmarks/drift_overhead_bench.py --write      # also replace the section in docs/benchmarks.md
    python benchmarks/drift_overhead_bench.py --pairs 500  # shorter

Reported: client-side latency (median, p90) of single-row and 100-row requests with and without
drift, the median of the paired differences as a share of predict latency (target: under 5%),
the servers' CPU time per request (from /proc, the writer thread's drift work included), and the
monitor's own cost in-process: `observe` per row and one evaluation of a full window. Load
average before and after.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## Live drift overhead (`benchmarks/drift_overhead_bench.py`)"
TARGET = 0.05  # issue 11: under 5% of predict latency

sys.path.insert(0, str(REPO))
from benchmarks.serve_bench import cpu_seconds, free_port, rows, stop, wait_ready  # noqa: E402


def prepare(work: Path, env: dict[str, str]) -> tuple[Path, str]:
    """Build the fraud example and train one run (the notebook's defaults), promoted."""
    notebook = work / "fraud_detection.ipynb"
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", notebook)
    store = work / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "nb2prod", "train", str(notebook), "--engine", "python", "--store", str(store)]
        + ["--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    run = json.loads(done.stdout)["run_id"]
    subprocess.run(
        [sys.executable, "-m", "nb2prod", "promote", run, "--store", str(store)],
        check=True,
        env=env,
        capture_output=True,
    )
    return store, run


def start(store: Path, env: dict[str, str], extra: list[str]) -> tuple[subprocess.Popen[Any], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2prod", "serve", str(store), "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
    return proc, port


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, body: bytes) -> float:
        started = time.perf_counter()
        self.conn.request("POST", "/predict", body=body, headers={"content-type": "application/json"})
        answer = self.conn.getresponse()
        answer.read()
        elapsed = time.perf_counter() - started
        if answer.status != 200:
            raise SystemExit(f"/predict answered {answer.status}")
        return elapsed

    def get(self, path: str) -> Any:
        self.conn.request("GET", path)
        answer = self.conn.getresponse()
        return json.loads(answer.read())


def paired(on: Client, off: Client, bodies: list[bytes], pairs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(pairs):
        body = bodies[i % len(bodies)]
        order = [("on", on), ("off", off)] if i % 2 == 0 else [("off", off), ("on", on)]
        for name, client in order:
            times[name].append(client.post(body))
    return times


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(times: dict[str, list[float]], cpu: dict[str, float]) -> dict[str, float]:
    diffs = [a - b for a, b in zip(times["on"], times["off"])]
    off_median = statistics.median(times["off"])
    return {
        "requests": len(times["on"]),
        "on_p50_ms": statistics.median(times["on"]) * 1000,
        "off_p50_ms": off_median * 1000,
        "on_p90_ms": quantile(times["on"], 0.9) * 1000,
        "off_p90_ms": quantile(times["off"], 0.9) * 1000,
        "diff_ms": statistics.median(diffs) * 1000,
        "overhead": statistics.median(diffs) / off_median,
        "ratio": statistics.median(times["on"]) / off_median,
        "on_cpu_ms": cpu["on"] * 1000 / len(times["on"]),
        "off_cpu_ms": cpu["off"] * 1000 / len(times["off"]),
    }


def in_process(run_dir: Path, run: str, window: int = 500) -> dict[str, float]:
    """`observe` per row and one evaluation of a full window, without a server."""
    import logging

    from nb2prod.serve.shipped.drift_window import DriftMonitor

    logging.getLogger("nb2prod.serve").setLevel(logging.ERROR)  # the made-up rows do drift
    monitor = DriftMonitor(window=window, every=10**9)  # evaluations timed apart
    monitor.attach(SimpleNamespace(current=SimpleNamespace(run=run, run_dir=str(run_dir), model_sha256="")))
    records = [{"run": run, "inputs": row, "output": 0.01 * (i % 100)} for i, row in enumerate(rows(2000))]
    started = time.perf_counter()
    for start_at in range(0, len(records), 50):
        monitor.observe(records[start_at : start_at + 50])
    per_row = (time.perf_counter() - started) / len(records)
    state = monitor._state
    assert state is not None and len(state.rows) == window
    started = time.perf_counter()
    for _ in range(50):
        monitor._evaluate(state)
    evaluation = (time.perf_counter() - started) / 50
    return {"observe_us": per_row * 1e6, "evaluate_ms": evaluation * 1000, "features": len(state.features)}


def render(results: dict[str, dict[str, float]], local: dict[str, float], before, after, run: str) -> str:
    lines = [
        HEADING,
        "",
        f"The fraud example (its notebook's defaults: a 100-tree forest behind a pandas feature function), one "
        f"run (`{run}`) served twice by `nb2prod serve` on loopback: with the live drift window (default: 500 "
        f"rows, checked every 50) and with `--no-drift`; no prediction log on either. Requests go in pairs, one "
        f"to each server, the order alternating, on keep-alive connections, so both servers share the machine's "
        f"load. Overhead = median of the paired differences / median latency without drift. "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, 2 cores shared with other work: load average "
        f"{before[0]:.1f} before, {after[0]:.1f} after.",
        "",
        "| requests | pairs | p50 drift on (ms) | p50 --no-drift (ms) | p90 on / off (ms) | median paired difference (ms) "
        "| overhead | ratio of medians | server CPU per request on / off (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['requests']:.0f} | {r['on_p50_ms']:.2f} | {r['off_p50_ms']:.2f} | "
            f"{r['on_p90_ms']:.2f} / {r['off_p90_ms']:.2f} | {r['diff_ms']:+.3f} | {r['overhead'] * 100:+.1f}% | "
            f"{r['ratio']:.3f} | {r['on_cpu_ms']:.2f} / {r['off_cpu_ms']:.2f} |"
        )
    met = all(r["overhead"] < TARGET for r in results.values())
    lines += [
        "",
        f"Target (issue 11): under {TARGET:.0%} of predict latency: {'met' if met else 'missed'}.",
        "",
        f"The monitor's own work, in-process (standard library, on the writer thread, never on the request path): "
        f"`observe` {local['observe_us']:.1f} µs a row (six inputs and the score counted into the baseline's bins, "
        f"the oldest row taken out), one evaluation of a full 500-row window ({local['features']:.0f} columns: KS "
        f"or chi-squared, PSI) {local['evaluate_ms']:.3f} ms. A request pays only for handing its records to the "
        f"writer thread, which the prediction log already does.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=800, help="single-row request pairs")
    parser.add_argument("--batch-pairs", type=int, default=200, help="100-row request pairs")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nb2prod-drift-overhead-") as tmp:
        work = Path(tmp)
        store, run = prepare(work, env)
        on_proc, on_port = start(store, env, [])
        off_proc, off_port = start(store, env, ["--no-drift"])
        try:
            on, off = Client(on_port), Client(off_port)
            single = [json.dumps({"instances": [row]}).encode() for row in rows(200)]
            random.Random(1).shuffle(single)
            batch = [json.dumps({"instances": rows(100)}).encode()]
            paired(on, off, single, 100)  # warm-up
            results = {}
            for name, bodies, pairs in (("1 row", single, args.pairs), ("100 rows", batch, args.batch_pairs)):
                cpu_before = {"on": cpu_seconds(on_proc.pid), "off": cpu_seconds(off_proc.pid)}
                times = paired(on, off, bodies, pairs)
                cpu = {
                    "on": cpu_seconds(on_proc.pid) - cpu_before["on"],
                    "off": cpu_seconds(off_proc.pid) - cpu_before["off"],
                }
                results[name] = summary(times, cpu)
            drift = on.get("/metadata")["monitoring"]["drift"]
            expected = 100 + args.pairs + 100 * args.batch_pairs
            deadline = time.monotonic() + 60
            while drift["observed"] < expected and time.monotonic() < deadline:
                time.sleep(0.1)
                drift = on.get("/metadata")["monitoring"]["drift"]
            if drift["observed"] != expected or drift["status"] != "ok":
                raise SystemExit(f"the drift server observed {drift['observed']} rows of {expected}: {drift}")
            if "drift" in off.get("/metadata")["monitoring"]:
                raise SystemExit("the --no-drift server has a drift monitor")
        finally:
            for proc in (on_proc, off_proc):
                stop(proc)
        local = in_process(store / run, run)
    after = os.getloadavg()
    section = render(results, local, before, after, run)
    print(section)
    if args.write:
        from benchmarks.docs_section import replace_section

        replace_section(DOC, HEADING, section)
    raise SystemExit(0 if all(r["overhead"] < TARGET for r in results.values()) else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    main()
