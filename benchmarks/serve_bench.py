"""Benchmark serving the fraud example: the in-process floor, `nb2prod serve` (with and without
batching) and MLflow's `mlflow models serve` of the same model and inputs, one server at a time.

    apt-get install -y wrk                      # the load generator (Debian)
    python benchmarks/serve_bench.py            # print the table
    python benchmarks/serve_bench.py --write    # also replace the section in docs/benchmarks.md
    python benchmarks/serve_bench.py --no-mlflow --duration 3

Closed loop: wrk with a Lua script (POST body), concurrency 1 and 16, single rows and 100-row
batches, p50/p99/requests per second, and the server's CPU per request (from /proc). Open loop:
a fixed rate of 200 requests/s from an asyncio generator whose latency is measured from when each
request should have been sent, not when it was. A promote and a rollback under load (wrk, 4
connections): failed requests, swap time, p99. Ready time: process start to /readyz 200. Metrics
cost: one request's counter and histogram updates. Load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## Serving (`benchmarks/serve_bench.py`)"
ROW = {
    "amount": 84.2,
    "hour": 13,
    "merchant_category": 2,
    "distance_from_home": 6.5,
    "card_present": 1,
    "velocity_1h": 1,
}


@dataclass
class Load:
    name: str
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int
    requests: int
    cpu_ms: float | None = None  # server CPU per request


@dataclass
class Result:
    server: str
    ready_s: float | None = None
    loads: list[Load] = field(default_factory=list)
    rss_mb: float | None = None
    note: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rows(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        row = dict(ROW)
        row["amount"] = round(ROW["amount"] + i * 3.7, 2)
        row["hour"] = i % 24
        row["merchant_category"] = i % 10
        out.append(row)
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 300.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {timeout} s")


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    assert match, text
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def wrk(url: str, body: dict[str, Any], connections: int, duration: float, name: str, pid: int | None) -> Load:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    threads = 1 if connections == 1 else 2
    cpu0 = cpu_seconds(pid) if pid else None
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
    )
    cpu1 = cpu_seconds(pid) if pid else None
    script.unlink()
    out = done.stdout
    if "requests in" not in out:
        raise SystemExit(f"wrk failed: {done.stderr or out}")
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sockets.groups()) if sockets else 0)
    cpu = (cpu1 - cpu0) * 1000 / total if cpu0 is not None and total else None
    return Load(name, _ms(latency["50"]), _ms(latency["99"]), rps, errors, total, cpu)


async def _open_loop(host: str, port: int, path: str, body: bytes, rate: float, duration: float) -> list[float]:
    """Latencies (ms) of requests sent at a fixed rate, from each request's scheduled time."""
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        pool.put_nowait(await asyncio.open_connection(host, port))
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    failures = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(scheduled: float) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        reader, writer = await pool.get()
        try:
            writer.write(request)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if b" 200 " not in status:
                failures += 1
            latencies.append((loop.time() - scheduled) * 1000)
        finally:
            pool.put_nowait((reader, writer))

    n = int(rate * duration)
    await asyncio.gather(*(one(start + i / rate) for i in range(n)))
    while not pool.empty():
        _, writer = pool.get_nowait()
        writer.close()
    if failures:
        latencies.append(float("inf"))
    return latencies


def fixed_rate(
    port: int, path: str, body: dict[str, Any], rate: float, duration: float, name: str, pid: int | None
) -> Load:
    cpu0 = cpu_seconds(pid) if pid else None
    latencies = asyncio.run(_open_loop("127.0.0.1", port, path, json.dumps(body).encode(), rate, duration))
    cpu1 = cpu_seconds(pid) if pid else None
    errors = sum(1 for x in latencies if x == float("inf"))
    good = sorted(x for x in latencies if x != float("inf"))
    p99 = good[min(len(good) - 1, int(len(good) * 0.99))]
    cpu = (cpu1 - cpu0) * 1000 / len(good) if cpu0 is not None and good else None
    return Load(name, statistics.median(good), p99, len(good) / duration, errors, len(good), cpu)


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def prepare(work: Path, env: dict[str, str]) -> tuple[Path, Path, str, str]:
    """Build the fraud example and train two runs (100 trees; the second with another seed)."""
    notebook = work / "fraud_detection.ipynb"
    shutil.copy2(REPO / "examples" / "fraud" / "fraud_detection.ipynb", notebook)
    store = work / "runs"
    ids = []
    for seed in ("42", "7"):
        done = subprocess.run(
            [sys.executable, "-m", "nb2prod", "train", str(notebook), "--engine", "python", "--store", str(store),
             "-p", "seed", seed, "--format", "json"],
            capture_output=True, text=True, env=env, cwd=work,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        ids.append(json.loads(done.stdout)["run_id"])
    subprocess.run([sys.executable, "-m", "nb2prod", "promote", ids[0], "--store", str(store)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    return notebook, store, ids[0], ids[1]


def floor(store: Path, n: int = 300) -> tuple[Result, Result]:
    """The package's predict called in-process on records, for 1 and 100 rows."""
    from nb2prod.runs.predicting import load_run

    loaded = load_run(store, "production")
    results = []
    for size in (1, 100):
        batch = rows(size)
        for _ in range(20):
            loaded.predict_function(loaded.model, batch)
        times = []
        cpu0 = time.process_time()
        for _ in range(n if size == 1 else n // 3):
            t0 = time.perf_counter()
            loaded.predict_function(loaded.model, batch)
            times.append((time.perf_counter() - t0) * 1000)
        cpu = (time.process_time() - cpu0) * 1000 / len(times)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        results.append(Load(f"{size} row{'s' if size > 1 else ''}", statistics.median(times), p99,
                            1000 / statistics.mean(times), 0, len(times), cpu))  # fmt: skip
    return Result("in-process predict (floor)", loads=results[:1]), Result("floor 100", loads=results[1:])


def closed_and_open(
    result: Result, port: int, path: str, body1: dict, body100: dict, pid: int, duration: float
) -> None:
    url = f"http://127.0.0.1:{port}{path}"
    for conns in (1, 16):
        result.loads.append(wrk(url, body1, conns, duration, f"1 row, c{conns}", pid))
    for conns in (1, 16):
        result.loads.append(wrk(url, body100, conns, duration, f"100 rows, c{conns}", pid))
    result.loads.append(fixed_rate(port, path, body1, 200.0, duration, "1 row, 200/s open loop", pid))
    result.rss_mb = rss_mb(pid)


def nb2prod_server(store: Path, env: dict[str, str], duration: float, extra: list[str], label: str) -> Result:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2prod", "serve", str(store), "--port", str(port), *extra],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        result = Result(label, ready_s=wait_ready(f"http://127.0.0.1:{port}/readyz", proc))
        closed_and_open(result, port, "/predict", {"instances": rows(1)}, {"instances": rows(100)}, proc.pid, duration)
        return result
    finally:
        stop(proc)


def swap_under_load(store: Path, env: dict[str, str], second: str, duration: float) -> dict[str, Any]:
    """Promote then roll back while wrk sends requests on 4 connections; compare with a quiet run."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2prod", "serve", str(store), "--port", str(port), "--reload-interval", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}/readyz", proc)
        body = {"instances": rows(1)}
        quiet = wrk(f"{url}/predict", body, 4, duration, "no swap, c4", proc.pid)
        swaps: list[float | None] = []
        import threading

        busy_box: list[Load] = []
        busy_s = duration * 6
        worker = threading.Thread(
            target=lambda: busy_box.append(wrk(f"{url}/predict", body, 4, busy_s, "promote + rollback, c4", proc.pid))
        )
        worker.start()

        def move_and_wait(args: list[str], target: str, reloads: int) -> None:
            subprocess.run([sys.executable, "-m", "nb2prod", *args, "--store", str(store)], check=True, env=env,
                           capture_output=True)  # fmt: skip
            deadline = time.time() + busy_s / 2
            while time.time() < deadline:
                meta = json.load(urllib.request.urlopen(f"{url}/metadata"))
                if meta["run"] == target and meta["reloads"] >= reloads:
                    swaps.append(meta["last_reload"]["seconds"])
                    return
                time.sleep(0.05)
            swaps.append(None)

        time.sleep(duration * 0.5)
        first = json.load(urllib.request.urlopen(f"{url}/metadata"))["run"]
        move_and_wait(["promote", second], second, 1)
        move_and_wait(["rollback"], first, 2)
        worker.join()
        busy = busy_box[0]
        meta = json.load(urllib.request.urlopen(f"{url}/metadata"))
        return {"quiet": quiet, "busy": busy, "swap_s": swaps, "reloads": meta["reloads"]}
    finally:
        stop(proc)


MLFLOW_MODEL = """
import mlflow.pyfunc
from fraud_detection.predict import predict


class Fraud(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from nb2prod.runs.predicting import load_run
        self.model = load_run(context.artifacts["store"], "production").model

    def predict(self, context, model_input, params=None):
        return predict(self.model, model_input)
"""


def mlflow_server(store: Path, build_src: Path, env: dict[str, str], duration: float, work: Path) -> Result:
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return Result("mlflow models serve", note="MLflow is not installed: not measured")
    model_dir = work / "mlflow-model"
    code = work / "mlflow_fraud.py"
    code.write_text(MLFLOW_MODEL)
    env = {**env, "PYTHONPATH": os.pathsep.join([str(build_src), str(work), env.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-c",
         "import mlflow.pyfunc, mlflow_fraud, sys; "
         f"mlflow.pyfunc.save_model({str(model_dir)!r}, python_model=mlflow_fraud.Fraud(), "
         f"artifacts={{'store': {str(store)!r}}}, code_paths=[{str(code)!r}])"],
        check=True, env=env, capture_output=True, cwd=work,
    )  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h", "127.0.0.1",
         "-p", str(port), "-w", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        result = Result("mlflow models serve", ready_s=wait_ready(f"http://127.0.0.1:{port}/ping", proc))
        pids = [
            int(p)
            for p in subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout.split()
        ]
        worker = max(pids, key=lambda p: rss_mb(p)) if pids else proc.pid
        closed_and_open(
            result,
            port,
            "/invocations",
            {"dataframe_records": rows(1)},
            {"dataframe_records": rows(100)},
            worker,
            duration,
        )
        result.rss_mb = sum(rss_mb(p) for p in pids) if pids else result.rss_mb
        import mlflow as _m

        result.note = f"MLflow {_m.__version__}, --env-manager local, 1 worker"
        return result
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def metrics_cost() -> float:
    from nb2prod.serve.shipped.metrics import Metrics

    m = Metrics()
    route, labels = (("route", "/predict"),), (("route", "/predict"), ("code", "200"))
    run = (("run", "r"),)

    def one() -> None:
        m.requests.inc(labels)
        m.latency.observe(0.004, route)
        m.predictions.inc(run, 1)
        m.batch_rows.observe(1)

    n = 200_000
    return timeit.timeit(one, number=n) / n * 1e6


def table(results: list[Result]) -> str:
    lines = [
        "| server | load | p50 ms | p99 ms | requests/s | server CPU ms/request | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for load in result.loads:
            cpu = f"{load.cpu_ms:.2f}" if load.cpu_ms is not None else "-"
            lines.append(
                f"| {result.server} | {load.name} | {load.p50_ms:.2f} | {load.p99_ms:.2f} | {load.rps:.0f} | {cpu} | {load.errors} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    began = time.perf_counter()
    load_before = os.getloadavg()
    env = {**os.environ}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        work = Path(tmp)
        notebook, store, first, second = prepare(work, env)
        prepared_s = time.perf_counter() - began
        floor1, floor100 = floor(store)
        floor1.loads += floor100.loads
        results = [floor1]
        results.append(nb2prod_server(store, env, args.duration, [], "nb2prod serve"))
        results.append(nb2prod_server(store, env, args.duration, ["--batching"], "nb2prod serve --batching"))
        if not args.no_mlflow:
            results.append(
                mlflow_server(store, notebook.parent / "build" / "fraud-detection" / "src", env, args.duration, work)
            )
        swap = swap_under_load(store, env, second, args.duration)
        cost = metrics_cost()
    load_after = os.getloadavg()
    wall = time.perf_counter() - began
    report = render(results, swap, cost, load_before, load_after, wall, prepared_s)
    print(report)
    if args.write:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from docs_section import replace_section

        replace_section(DOC, HEADING, report)


def render(results, swap, cost, before, after, wall, prepared_s) -> str:
    def find(server: str, load: str) -> Load | None:
        for r in results:
            if r.server == server:
                for item in r.loads:
                    if item.name == load:
                        return item
        return None

    floor1 = find("in-process predict (floor)", "1 row")
    plain = find("nb2prod serve", "1 row, c1")
    c16 = find("nb2prod serve", "1 row, c16")
    b16 = find("nb2prod serve --batching", "1 row, c16")
    b1 = find("nb2prod serve --batching", "1 row, c1")
    ml1 = find("mlflow models serve", "1 row, c1")
    ml16 = find("mlflow models serve", "1 row, c16")
    rate = find("nb2prod serve", "1 row, 200/s open loop")
    lines = [
        HEADING,
        "",
        f"The fraud example (100-tree forest behind its pandas feature function), two runs trained by the "
        f"benchmark ({prepared_s:.0f} s); wrk {subprocess.run(['wrk', '-v'], capture_output=True, text=True).stdout.split()[1] if shutil.which('wrk') else ''}"
        f" for closed loops, an asyncio open-loop generator for 200 requests/s. One worker per server, one server at a time, "
        f"on this 2-core machine shared with other work: load average {before[0]:.2f} before and {after[0]:.2f} after "
        f"(total wall time {wall:.0f} s). Numbers from a loaded machine are comparable within this run only.",
        "",
        table(results),
        "",
        "| server | ready s | resident MB | note |",
        "|---|---|---|---|",
    ]
    for r in results[1:]:
        ready = f"{r.ready_s:.1f}" if r.ready_s is not None else "-"
        rss = f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-"
        lines.append(f"| {r.server} | {ready} | {rss} | {r.note} |")
    lines.append("")
    checks = []
    if floor1 and plain:
        checks.append(
            f"- Added latency at concurrency 1: p50 {plain.p50_ms - floor1.p50_ms:+.2f} ms over the floor "
            f"(target within 1 ms); server CPU {plain.cpu_ms:.2f} ms a request vs the floor's {floor1.cpu_ms:.2f} ms "
            f"({plain.cpu_ms - floor1.cpu_ms:+.2f} ms)."
        )
    if plain and c16:
        checks.append(
            f"- Under load without batching: {c16.rps:.0f} requests/s at concurrency 16 vs {plain.rps:.0f} at 1 "
            f"(target: at least as many)."
        )
    if b1 and b16:
        checks.append(
            f"- With --batching: {b16.rps:.0f} requests/s at concurrency 16 vs {b1.rps:.0f} at 1; at concurrency 1 "
            f"p50 {b1.p50_ms:.2f} ms and CPU {b1.cpu_ms:.2f} ms a request vs {plain.p50_ms:.2f} ms and "
            f"{plain.cpu_ms:.2f} ms without."
        )
    if ml16 and (b16 or c16):
        best = max((x for x in (b16, c16) if x), key=lambda x: x.rps)
        checks.append(
            f"- Against MLflow at concurrency 16: {best.rps / ml16.rps:.1f}x its requests/s "
            f"(target 3x), p99 {best.p99_ms:.1f} ms vs {ml16.p99_ms:.1f} ms; at concurrency 1 MLflow p50 {ml1.p50_ms:.2f} ms."
        )
    if rate:
        checks.append(
            f"- 200 requests/s open loop: p99 {rate.p99_ms:.1f} ms (target under 50 ms), {rate.errors} errors."
        )
    quiet, busy = swap["quiet"], swap["busy"]
    swaps = ", ".join(f"{s:.2f} s" if s is not None else "?" for s in swap["swap_s"])
    checks.append(
        f"- Promote and rollback under load (c4, {swap['reloads']} reloads): {busy.errors} failed of {busy.requests} requests; load, verify and "
        f"warm-up took {swaps} in the background (target under 1 s); p99 {busy.p99_ms:.1f} ms vs {quiet.p99_ms:.1f} ms "
        f"without a swap (target within 10%)."
    )
    ready = results[1].ready_s if len(results) > 1 else None
    if ready is not None:
        checks.append(f"- Ready (process start to /readyz 200): {ready:.1f} s (target under 3 s).")
    checks.append(f"- Metrics: {cost:.2f} microseconds for one request's updates (target under 10).")
    lines.extend(checks)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
