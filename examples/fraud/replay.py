"""The fraud story, replayed against a real server on 127.0.0.1.

    python examples/fraud/replay.py            # prints a timeline; exit 1 if a step's expectation fails
    python examples/fraud/replay.py --json     # the timeline as JSON (one object, "steps" in order)

Train v1 of the fraud example (in a temporary copy: nothing in the repository is touched), promote
it, serve it with the drift and feedback monitors on and a prediction log, send normal traffic,
then a fraud wave with new tactics (a card-testing ring: daytime, card-present, small amounts, at
electronics shops and marketplaces, in bursts), watch the drift alarm fire and live recall fall
below the notebook's gate as labels arrive, ask why one transaction was flagged, retrain v2 on the
recent labelled traffic (the notebook's `recent_transactions` parameter), promote it under load
(hot reload, counting failed requests), roll back and forward again. Uses nb2prod's library API
(aliases, drift) and its CLI (train, promote, rollback, serve, drift).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "fraud_detection.ipynb"
RAW = ["amount", "hour", "merchant_category", "distance_from_home", "card_present", "velocity_1h"]
RING_SHARE = 0.15  # share of the shifted traffic that is the ring's fraud (normal traffic: 2%)


@dataclass
class Step:
    t: float
    event: str
    ok: bool
    figures: dict[str, Any] = field(default_factory=dict)
    expectations: list[dict[str, Any]] = field(default_factory=list)


class Timeline:
    def __init__(self, echo: bool) -> None:
        self.started = time.perf_counter()
        self.steps: list[Step] = []
        self.echo = echo

    def add(self, event: str, figures: dict[str, Any], checks: list[tuple[str, bool]]) -> Step:
        step = Step(
            round(time.perf_counter() - self.started, 2),
            event,
            all(ok for _, ok in checks),
            figures,
            [{"expect": text, "ok": bool(ok)} for text, ok in checks],
        )
        self.steps.append(step)
        if self.echo:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in figures.items())
            print(f"t+{step.t:7.1f}s  {'ok  ' if step.ok else 'FAIL'} {event:<22} {shown}", flush=True)
            for item in step.expectations:
                if not item["ok"]:
                    print(f"{'':12}expected: {item['expect']}", flush=True)
        return step

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": all(s.ok for s in self.steps),
            "steps": [s.__dict__ for s in self.steps],
        }


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


# --- the world: normal traffic from the notebook's generator, and the ring's new tactics -------


def ring_transactions(make_transactions: Any, n: int, seed: int) -> Any:
    """Traffic during the fraud wave: legitimate customers as before (the notebook's generator with
    no fraud), plus RING_SHARE of transactions from a card-testing ring with cloned cards: in the
    daytime, card present, small amounts, at electronics shops and online marketplaces (codes 7 and
    8), in the next town rather than abroad, several in an hour."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    k = int(round(n * RING_SHARE))
    legit = make_transactions(n - k, 0.0, seed)
    ring = pd.DataFrame(
        {
            "amount": rng.lognormal(3.0, 0.7, k).round(2),
            "hour": np.clip(rng.normal(13.0, 3.0, k), 0, 23).astype(int),
            "merchant_category": rng.choice(10, k, p=[0.02, 0.02, 0.03, 0.03, 0.05, 0.05, 0.10, 0.35, 0.30, 0.05]),
            "distance_from_home": rng.exponential(25.0, k).round(1),
            "card_present": (rng.random(k) < 0.9).astype(int),
            "velocity_1h": rng.poisson(3.0, k),
            "is_fraud": 1,
        }
    )
    mixed = pd.concat([legit, ring], ignore_index=True)
    return mixed.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# --- a small HTTP client (standard library, keep-alive per thread) ------------------------------


class Client:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any, float]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("content-type", "application/json")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (urllib.error.URLError, OSError) as exc:
            return 0, {"error": str(exc)}, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text), elapsed
        except ValueError:
            return status, text, elapsed

    def predict(self, records: list[dict[str, Any]]) -> tuple[int, Any, float]:
        return self.call("POST", "/predict", {"instances": records})


def send_traffic(client: Client, rows: list[dict[str, Any]], concurrency: int) -> list[dict[str, Any]]:
    """One request per row over `concurrency` threads; per row: status, latency, id, score, run."""
    results: list[dict[str, Any] | None] = [None] * len(rows)
    lock = threading.Lock()
    cursor = [0]

    def worker() -> None:
        while True:
            with lock:
                i = cursor[0]
                cursor[0] += 1
            if i >= len(rows):
                return
            status, body, elapsed = client.predict([rows[i]])
            ok = status == 200 and isinstance(body, dict)
            results[i] = {
                "status": status,
                "latency_ms": elapsed * 1000,
                "id": body["ids"][0] if ok else None,
                "score": body["predictions"][0] if ok else None,
                "run": body["model"]["run"] if ok else None,
            }

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def recall(results: list[dict[str, Any]], labels: list[int]) -> float:
    positives = [r for r, y in zip(results, labels) if y == 1 and r["score"] is not None]
    return sum(r["score"] >= 0.5 for r in positives) / len(positives) if positives else float("nan")


class Load:
    """Steady background traffic during a swap: counts requests, failures, and which runs answered."""

    def __init__(self, client: Client, rows: list[dict[str, Any]]) -> None:
        self.client, self.rows = client, rows
        self.sent = self.failed = 0
        self.runs: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            status, body, _ = self.client.predict([self.rows[i % len(self.rows)]])
            i += 1
            self.sent += 1
            if status != 200 or not isinstance(body, dict):
                self.failed += 1
            else:
                self.runs.append((time.perf_counter(), body["model"]["run"]))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def wait_for(self, run_id: str, since: float, timeout: float) -> float | None:
        """Seconds from `since` to the first response from `run_id` after it, or None."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for when, run in list(self.runs):
                if when >= since and run == run_id:
                    return when - since
            time.sleep(0.05)
        return None


# --- the replay ---------------------------------------------------------------------------------


def nb2prod(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nb2prod", *args], cwd=cwd, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_flags(cwd: Path) -> dict[str, bool]:
    text = nb2prod("serve", "--help", cwd=cwd).stdout
    return {flag: flag in text for flag in ("--drift-window", "--feedback-window")}


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None."""
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        found = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            try:
                return float(value)
            except ValueError:
                return None
    return None


def alarm_names(metadata: Any) -> list[str]:
    alarms = metadata.get("alarms") if isinstance(metadata, dict) else None
    return sorted({a.get("name") for a in alarms or [] if isinstance(a, dict) and a.get("state") == "firing"})


def poll(fetch: Any, until: Any, timeout: float, every: float = 0.25) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fetch()
    while not until(value) and time.perf_counter() - started < timeout:
        time.sleep(every)
        value = fetch()
    return value, time.perf_counter() - started


def replay(args: argparse.Namespace, timeline: Timeline, work: Path) -> None:
    from nb2prod.monitor import drift as offline_drift
    from nb2prod.runs.aliases import AliasStore
    from nb2prod.runs.store import RunStore

    shutil.copy2(NOTEBOOK, work / NOTEBOOK.name)
    store = work / "runs"
    log_dir = work / "predictions"
    fast = ["-p", "n_estimators", str(args.trees)]

    # 1. train v1 (the notebook as it is, at its defaults but for the number of trees)
    started = time.perf_counter()
    trained = nb2prod(
        "train", NOTEBOOK.name, "--engine", "python", "--store", str(store), "--format", "json", *fast, cwd=work
    )
    seconds = time.perf_counter() - started
    ok = trained.returncode == 0
    v1 = json.loads(trained.stdout) if ok else {}
    run_v1 = v1.get("run_id", "")
    recorded = json.loads((RunStore(store).get(run_v1).path / "run.json").read_text()) if ok else {}
    gates = {g["metric"]: g for g in recorded.get("gates") or [] if isinstance(g, dict) and "metric" in g}
    gate = float(gates["recall"]["value"]) if "recall" in gates else 0.5
    timeline.add(
        "train v1",
        {"run": run_v1, "seconds": round(seconds, 1), "recall": v1.get("metrics", {}).get("recall"), "gate": gate},
        [
            ("nb2prod train exits 0", ok),
            ("recorded recall passes its gate", v1.get("metrics", {}).get("recall", 0) >= gate),
        ],
    )
    if not ok:
        raise SystemExit(trained.stderr)
    sys.path.insert(0, str(work / "build" / "fraud-detection" / "src"))
    from fraud_detection.core import LABEL, make_transactions

    # 2. promote v1 (library)
    started = time.perf_counter()
    change = AliasStore(RunStore(store)).promote(run_v1)
    timeline.add(
        "promote v1",
        {"seconds": round(time.perf_counter() - started, 3)},
        [("production -> v1", change.to_run == run_v1)],
    )

    # 3. serve, monitors on
    flags = serve_flags(work)
    port = free_port()
    command = [
        "serve",
        str(store),
        "--store",
        str(store),
        "--port",
        str(port),
        "--log",
        str(log_dir),
        "--reload-interval",
        "0.5",
    ]
    if flags["--drift-window"]:
        command += ["--drift-window", str(args.drift_window)]
    if flags["--feedback-window"]:
        command += ["--feedback-window", str(args.feedback_window)]
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "nb2prod", *command],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "w"),
        stdin=subprocess.DEVNULL,
    )
    client = Client(f"http://127.0.0.1:{port}")
    try:
        ready, _ = poll(
            lambda: client.call("GET", "/readyz")[0], lambda s: s == 200 or server.poll() is not None, 300, 0.5
        )
        timeline.add(
            "serve",
            {
                "port": port,
                "seconds_to_ready": round(time.perf_counter() - started, 1),
                **{f[2:]: v for f, v in flags.items()},
            },
            [
                ("/readyz is 200", ready == 200),
                ("serve has --drift-window", flags["--drift-window"]),
                ("serve has --feedback-window", flags["--feedback-window"]),
            ],
        )
        if ready != 200:
            raise SystemExit((work / "server.log").read_text())
        run_story(args, timeline, work, client, store, log_dir, run_v1, gate, make_transactions, LABEL, offline_drift)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_story(
    args, timeline, work, client, store, log_dir, run_v1, gate, make_transactions, label, offline_drift
) -> None:
    # 4. normal traffic, then its labels
    normal = make_transactions(args.normal, 0.02, 1001)
    results = send_traffic(client, normal[RAW].to_dict(orient="records"), args.concurrency)
    latencies = [r["latency_ms"] for r in results]
    failed = sum(r["status"] != 200 for r in results)
    status, fed, _ = client.call(
        "POST", "/feedback", [{"id": r["id"], "label": int(y)} for r, y in zip(results, normal[label])]
    )
    _, meta, _ = client.call("GET", "/metadata")
    live = (meta.get("monitoring") or {}).get("live") or {} if isinstance(meta, dict) else {}
    timeline.add(
        "normal traffic",
        {
            "requests": len(results),
            "failed": failed,
            "p50_ms": round(percentile(latencies, 0.5), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "recall": round(recall(results, list(normal[label])), 3),
            "feedback_status": status,
            "live_recall": (live.get("metrics") or {}).get("recall"),
            "alarms": alarm_names(meta),
        },
        [
            ("every request answered 200", failed == 0),
            ("POST /feedback accepted the labels", status == 200),
            ("no alarm on normal traffic", alarm_names(meta) == []),
        ],
    )

    # 5. the fraud wave: inputs shift, the drift alarm fires
    wave = ring_transactions(make_transactions, args.shifted, 2002)
    shift_started = time.perf_counter()
    shifted = send_traffic(client, wave[RAW].to_dict(orient="records"), args.concurrency)
    meta, waited = poll(lambda: client.call("GET", "/metadata")[1], lambda m: "drift" in alarm_names(m), 30)
    _, metrics_text, _ = client.call("GET", "/metrics")
    drift_meta = ((meta.get("monitoring") or {}).get("drift") or {}) if isinstance(meta, dict) else {}
    drifted = sorted(f["feature"] for f in drift_meta.get("features", []) if f.get("drifted"))
    alarm_metric = metric_value(metrics_text if isinstance(metrics_text, str) else "", "nb2prod_drift_alarm")
    v1_recall = recall(shifted, list(wave[label]))
    timeline.add(
        "fraud wave: drift alarm",
        {
            "requests": len(shifted),
            "failed": sum(r["status"] != 200 for r in shifted),
            "ring_share": RING_SHARE,
            "v1_recall_on_wave": round(v1_recall, 3),
            "seconds_to_alarm": round(time.perf_counter() - shift_started, 1),
            "drifted": drifted,
            "nb2prod_drift_alarm": alarm_metric,
        },
        [
            ("/metadata alarms has drift", "drift" in alarm_names(meta)),
            ("nb2prod_drift_alarm is 1 in /metrics", alarm_metric == 1.0),
            (
                "an input the ring changed drifted",
                bool(set(drifted) & {"merchant_category", "velocity_1h", "card_present", "hour", "amount"}),
            ),
        ],
    )

    # 6. the offline check of the same prediction log: library call and CLI
    report = offline_drift(store, "production", log_dir, window=args.shifted)
    cli = nb2prod(
        "drift",
        "production",
        str(log_dir),
        "--store",
        str(store),
        "--window",
        str(args.shifted),
        "--format",
        "json",
        cwd=work,
    )
    cli_drifted = json.loads(cli.stdout)["drifted"] if cli.stdout.strip().startswith("{") else []
    timeline.add(
        "offline drift of the log",
        {"library_drifted": [c.name for c in report.drifted], "cli_exit": cli.returncode, "cli_drifted": cli_drifted},
        [("nb2prod.monitor.drift finds drift", bool(report.drifted)), ("nb2prod drift exits 1", cli.returncode == 1)],
    )

    # 7. labels arrive, batch by batch: live recall falls below the gate
    history = []
    meta = {}
    for start in range(0, len(shifted), args.label_batch):
        batch = [
            {"id": r["id"], "label": int(y)}
            for r, y in zip(shifted[start : start + args.label_batch], wave[label][start : start + args.label_batch])
        ]
        client.call("POST", "/feedback", batch)
        _, meta, _ = client.call("GET", "/metadata")
        live = ((meta.get("monitoring") or {}).get("live") or {}) if isinstance(meta, dict) else {}
        history.append((live.get("metrics") or {}).get("recall"))
    _, metrics_text, _ = client.call("GET", "/metrics")
    text = metrics_text if isinstance(metrics_text, str) else ""
    live = ((meta.get("monitoring") or {}).get("live") or {}) if isinstance(meta, dict) else {}
    live_recall = (live.get("metrics") or {}).get("recall")
    failing = metric_value(text, "nb2prod_live_gate_failing", metric="recall")
    timeline.add(
        "labels: live recall falls",
        {
            "labelled": live.get("labelled"),
            "live_recall": live_recall,
            "recall_by_batch": [round(x, 3) if isinstance(x, float) else x for x in history],
            "gate": gate,
            "alarms": alarm_names(meta),
            "nb2prod_live_gate_failing": failing,
        },
        [
            ("live recall below the gate", isinstance(live_recall, (int, float)) and live_recall < gate),
            ("/metadata alarms has live-gate", "live-gate" in alarm_names(meta)),
            ("nb2prod_live_gate_failing{metric=recall} is 1", failing == 1.0),
        ],
    )

    # what an operator sees: nb2prod monitor against the running server
    shown = nb2prod("monitor", "production", "--url", client.base, "--store", str(store), "--format", "json", cwd=work)
    try:
        summary = json.loads(shown.stdout)
    except ValueError:
        summary = {}
    seen = sorted({a.get("name") for a in summary.get("alarms") or [] if isinstance(a, dict)})
    timeline.add(
        "nb2prod monitor",
        {"exit": shown.returncode, "alarms": seen},
        [
            ("nb2prod monitor exits 1 (alarms firing)", shown.returncode == 1),
            ("it shows both alarms", {"drift", "live-gate"} <= set(seen)),
        ],
    )

    # 8. why was this one flagged?
    flagged = next((i for i, r in enumerate(shifted) if r["score"] is not None and r["score"] >= 0.5), 0)
    row = wave[RAW].iloc[[flagged]].to_dict(orient="records")[0]  # ints stay ints
    status, explained, _ = client.call("POST", "/explain", {"instances": [_plain(row)]})
    reasons = top_reasons(explained)
    timeline.add(
        "explain one flag",
        {"status": status, "score": shifted[flagged]["score"], "transaction": _plain(row), "top_reasons": reasons},
        [("POST /explain answers 200", status == 200), ("three reasons naming features", len(reasons) == 3)],
    )

    # 9. retrain v2 on the recent labelled traffic: the prediction log joined with the labels the
    # server kept beside it (library readers), written as the notebook's recent_transactions CSV
    import pandas as pd

    from nb2prod.serve import read_feedback, read_prediction_log

    labels = {r["id"]: r["label"] for r in read_feedback(log_dir)}
    rows = [{**r["inputs"], label: int(labels[r["id"]])} for r in read_prediction_log(log_dir) if r.get("id") in labels]
    recent = work / "recent_transactions.csv"
    pd.DataFrame(rows, columns=[*RAW, label]).to_csv(recent, index=False)
    started = time.perf_counter()
    trained = nb2prod(
        "train", NOTEBOOK.name, "--engine", "python", "--store", str(store), "--format", "json",
        "-p", "n_estimators", str(args.trees), "-p", "recent_transactions", recent.name, cwd=work,
    )  # fmt: skip
    v2 = json.loads(trained.stdout) if trained.returncode == 0 else {}
    run_v2 = v2.get("run_id", "")
    timeline.add(
        "retrain v2 on recent data",
        {
            "run": run_v2,
            "seconds": round(time.perf_counter() - started, 1),
            "recent_rows": len(rows),
            "recall": v2.get("metrics", {}).get("recall"),
        },
        [
            ("nb2prod train exits 0", trained.returncode == 0),
            ("a new run", bool(run_v2) and run_v2 != run_v1),
            ("every labelled prediction joined its inputs", len(rows) == len(labels) > 0),
        ],
    )
    if not run_v2:
        raise SystemExit(trained.stderr)

    # 10-12. promote v2, roll back, forward again: under steady traffic, no failed request
    load_rows = wave[RAW].to_dict(orient="records")
    for event, args_cli, target in (
        ("promote v2 (hot reload)", ["promote", run_v2], run_v2),
        ("roll back to v1", ["rollback"], run_v1),
        ("forward again to v2", ["promote", run_v2], run_v2),
    ):
        with Load(client, load_rows) as load:
            time.sleep(0.5)
            started = time.perf_counter()
            moved = nb2prod(*args_cli, "--store", str(store), cwd=work)
            command_s = time.perf_counter() - started
            swap = load.wait_for(target, started, 60)
            time.sleep(0.5)
        timeline.add(
            event,
            {
                "command_s": round(command_s, 2),
                "serving_after_s": round(swap, 2) if swap is not None else None,
                "requests": load.sent,
                "failed": load.failed,
            },
            [
                (f"nb2prod {args_cli[0]} exits 0", moved.returncode == 0),
                ("the server answers from the new target", swap is not None),
                ("no failed request during the swap", load.failed == 0),
            ],
        )

    # 13. v2 on fresh traffic of the same wave
    fresh = ring_transactions(make_transactions, args.verify, 3003)
    answered = send_traffic(client, fresh[RAW].to_dict(orient="records"), args.concurrency)
    v2_recall = recall(answered, list(fresh[label]))
    runs = sorted({r["run"] for r in answered if r["run"]})
    timeline.add(
        "v2 on the wave",
        {
            "requests": len(answered),
            "runs": runs,
            "v2_recall": round(v2_recall, 3),
            "v1_recall": round(v1_recall, 3),
            "gate": gate,
            "v2_passes_gate": v2_recall >= gate,
        },
        [("served by v2", runs == [run_v2]), ("v2 recall on the wave above v1's", v2_recall > v1_recall)],
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def top_reasons(explained: Any) -> list[str]:
    """The first explanation's top three reasons: the explain cell's `reasons`, else the three
    largest contributions, "name (+0.12)"."""
    if not isinstance(explained, dict):
        return []
    items = explained.get("explanations") or explained.get("predictions") or []
    if not items:
        return []
    first = items[0]
    if isinstance(first, dict) and isinstance(first.get("reasons"), list) and first["reasons"]:
        return [str(r) for r in first["reasons"][:3]]  # the explain cell's own top three reasons
    contributions = first.get("contributions", first) if isinstance(first, dict) else {}
    if isinstance(contributions, list):  # [{"feature", "contribution"}, ...]
        contributions = {c.get("feature"): c.get("contribution") for c in contributions if isinstance(c, dict)}
    numeric = {k: float(v) for k, v in contributions.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    ranked = sorted(numeric.items(), key=lambda kv: -abs(kv[1]))[:3]
    return [f"{name} ({value:+.3f})" for name, value in ranked]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    parser.add_argument("--normal", type=int, default=800, help="requests of normal traffic")
    parser.add_argument("--shifted", type=int, default=1000, help="requests during the fraud wave")
    parser.add_argument("--verify", type=int, default=600, help="requests of the wave served by v2")
    parser.add_argument("--trees", type=int, default=30, help="n_estimators of both runs")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--drift-window", type=int, default=500)
    parser.add_argument("--feedback-window", type=int, default=500)
    parser.add_argument("--label-batch", type=int, default=250, help="labels per POST /feedback")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the copy, runs and logs here")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nb2prod-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    timeline = Timeline(echo=not args.json)
    try:
        replay(args, timeline, work)
    except SystemExit as exc:
        timeline.add("stopped", {"reason": str(exc.code)[-2000:]}, [("the replay ran to the end", False)])
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    result = timeline.to_dict()
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        print("replay " + ("passed" if result["ok"] else "FAILED"))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
