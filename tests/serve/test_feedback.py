"""POST /feedback on a real server: labels joined with predictions drive the live metrics, a failed
quality gate raises the live-gate alarm, and the offline `nb2prod feedback` computes the same."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore
from nb2prod.runs.trainer import train_target
from nb2prod.serve import ServeOptions, create_app, read_feedback
from tests.serve.conftest import RISKY, TRANSACTION, FraudRuns, Server

GATED = [("n_transactions", "4000"), ("n_estimators", "10"), ("max_depth", "4")]
GATED += [("min_recall", "0.3"), ("min_precision", "0")]


@dataclass(frozen=True)
class GatedRun:
    store: Path
    run: str


@pytest.fixture(scope="module")
def gated_run(fraud_runs: FraudRuns, tmp_path_factory: pytest.TempPathFactory) -> GatedRun:
    """The fraud example trained with its recall gate at 0.3, promoted to production."""
    store = tmp_path_factory.mktemp("gated") / "runs"
    trained = train_target(fraud_runs.build, GATED, engine="python", store=store)
    assert trained.manifest.succeeded
    AliasStore(RunStore(store)).promote(trained.run_id, "production")
    return GatedRun(store, trained.run_id)


def transactions(n_risky: int, n_normal: int) -> list[dict]:
    risky = [{**RISKY, "amount": RISKY["amount"] + i} for i in range(n_risky)]
    normal = [{**TRANSACTION, "amount": TRANSACTION["amount"] + i / 10} for i in range(n_normal)]
    return risky + normal


def wait_remembered(server: Server, n: int) -> None:
    """Predictions reach the monitor through the log's writer thread: wait until it has them."""
    deadline = time.monotonic() + 60
    while server.call("GET", "/metadata").json["monitoring"]["live"]["remembered"] < n:
        assert time.monotonic() < deadline, "the monitor never saw the predictions"
        time.sleep(0.05)


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def recall_precision(labels: list[int], scores: list[float]) -> tuple[float, float]:
    flagged = [s >= 0.5 for s in scores]
    tp = sum(1 for y, f in zip(labels, flagged) if y == 1 and f)
    return tp / sum(labels), tp / max(sum(flagged), 1)


def test_run_records_its_resolved_gates(gated_run: GatedRun) -> None:
    record = RunStore(gated_run.store).get(gated_run.run).manifest
    gates = {g["metric"]: g for g in record.gates}
    assert gates["recall"]["op"] == ">=" and gates["recall"]["value"] == 0.3
    assert gates["recall"]["parameter"] == "min_recall"
    assert gates["precision"]["value"] == 0.0
    assert gates["recall"]["line"] == 13  # the assert's line in the metrics cell


def test_labels_drive_live_metrics_and_a_failed_gate_raises_the_alarm(gated_run: GatedRun, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    options = ServeOptions(log_dir=str(log_dir), feedback_min_labels=20)
    with Server(create_app(gated_run.store, "production", options)) as server:
        server.wait_ready()
        answer = server.call("POST", "/predict", {"instances": transactions(10, 40)}).json
        ids, scores = answer["ids"], answer["predictions"]
        assert sum(s >= 0.5 for s in scores[:10]) == 10 and sum(s >= 0.5 for s in scores[10:]) == 0
        wait_remembered(server, 50)

        # too few labels: metrics computed, gates not judged yet, and /metadata says so
        few = server.call("POST", "/feedback", [{"id": pid, "label": int(s >= 0.5)} for pid, s in zip(ids, scores)][:5])
        assert few.status == 200 and few.json == {"matched": 5, "unmatched": []}
        live = server.call("GET", "/metadata").json["monitoring"]["live"]
        assert live["labelled"] == 5 and live["enough_labels"] is False and "20 labelled" in live["note"]
        assert all(g["failing"] is None for g in live["gates"])

        # labels that agree with the model: every gate holds
        agree = [{"id": pid, "label": int(s >= 0.5)} for pid, s in zip(ids, scores)]
        assert server.call("POST", "/feedback", agree).json["matched"] == 50
        metadata = server.call("GET", "/metadata").json
        live = metadata["monitoring"]["live"]
        assert live["labelled"] == 50 and live["metrics"]["recall"] == 1.0 and live["metrics"]["precision"] == 1.0
        assert live["alarm"] is False and not [a for a in metadata["alarms"] if a["name"] == "live-gate"]
        assert live["recorded"]["recall"] == RunStore(gated_run.store).get(gated_run.run).manifest.metrics["recall"]

        # the fraudsters change tactics: 30 of the 40 transactions the model passed were fraud
        labels = [1] * 10 + [1] * 30 + [0] * 10
        shifted = [{"id": pid, "label": y} for pid, y in zip(ids, labels)]
        assert server.call("POST", "/feedback", shifted).json == {"matched": 50, "unmatched": []}
        metadata = server.call("GET", "/metadata").json
        live = metadata["monitoring"]["live"]
        recall, precision = recall_precision(labels, scores)
        assert live["metrics"]["recall"] == pytest.approx(recall) == pytest.approx(0.25)
        assert live["metrics"]["precision"] == pytest.approx(precision)
        recall_gate = next(g for g in live["gates"] if g["metric"] == "recall")
        assert recall_gate["failing"] is True and recall_gate["value"] == 0.3
        assert live["alarm"] is True
        (alarm,) = [a for a in metadata["alarms"] if a["name"] == "live-gate"]
        assert alarm["state"] == "firing" and "recall" in alarm["reason"] and alarm["since"]

        text = server.call("GET", "/metrics").text
        assert metric(text, "nb2prod_live_alarm") == 1
        assert metric(text, "nb2prod_live_gate_failing", '{metric="recall"}') == 1
        assert metric(text, "nb2prod_live_gate_failing", '{metric="precision"}') == 0
        assert metric(text, "nb2prod_live_gate_threshold", '{metric="recall",op=">="}') == 0.3
        assert metric(text, "nb2prod_live_metric", '{metric="recall"}') == pytest.approx(0.25)
        assert metric(text, "nb2prod_live_labelled_rows") == 50
        assert metric(text, "nb2prod_feedback_labels_total", '{matched="true"}') == 105
        assert metric(text, "nb2prod_recorded_metric", '{metric="recall"}') == live["recorded"]["recall"]

        # unknown ids are answered as unmatched and counted
        mixed = server.call("POST", "/feedback", [{"id": "no-such-id", "label": 1}, {"id": ids[0], "label": 1}])
        assert mixed.json == {"matched": 1, "unmatched": ["no-such-id"]}
        text = server.call("GET", "/metrics").text
        assert metric(text, "nb2prod_feedback_labels_total", '{matched="false"}') == 1

    # every label went to the log folder's feedback files, with the run of its prediction
    written = list(read_feedback(log_dir))
    assert len(written) == 107
    assert written[-1] == {**written[-1], "id": ids[0], "label": 1, "run": gated_run.run}
    assert {r["run"] for r in written if r["id"] == "no-such-id"} == {None}
    assert all(p.name.startswith("feedback-") for p in log_dir.glob("feedback-*.jsonl"))

    # the offline join computes the same metrics from the same labels, and fails the same gate
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("prediction,outcome\n" + "".join(f"{pid},{y}\n" for pid, y in zip(ids, labels)))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    offline = subprocess.run(
        [sys.executable, "-m", "nb2prod", "feedback", "production", str(labels_file), "--log-dir", str(log_dir)]
        + ["--store", str(gated_run.store), "--id-column", "prediction", "--label-column", "outcome"]
        + ["--min-labels", "20", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert offline.returncode == 1, offline.stderr
    report = json.loads(offline.stdout)
    assert report["matched"] == 50 and report["unmatched"] == [] and report["appended"] == 50
    assert report["live"]["metrics"] == pytest.approx(live["metrics"])
    assert [g["failing"] for g in report["live"]["gates"]] == [g["failing"] for g in live["gates"]]
    assert len(list(read_feedback(log_dir))) == 157


def test_bad_feedback_bodies_get_problem_answers(gated_run: GatedRun) -> None:
    with Server(create_app(gated_run.store, "production")) as server:
        server.wait_ready()
        cases = [
            ({"id": "x"}, "label", "missing"),
            ([{"id": "a", "label": 1}, {"id": 3, "label": 1}], "1.id", "type"),
            ({"id": "x", "label": {"nested": 1}}, "label", "type"),
            ({"id": "x", "label": 1, "extra": 2}, "extra", "unknown"),
            ([], None, "missing"),
            ("text", None, "type"),
        ]
        for body, field, rule in cases:
            answer = server.call("POST", "/feedback", body)
            assert answer.status == 422, body
            assert answer.json["field"] == field and answer.json["rule"] == rule, answer.json
        broken = server.call("POST", "/feedback", raw=b"{not json")
        assert broken.status == 400 and broken.json["rule"] == "json"
        schema = server.call("GET", "/openapi.json").json["paths"]["/feedback"]["post"]["requestBody"]
        assert "id" in json.dumps(schema) and "label" in json.dumps(schema)


def test_feedback_needs_the_token_like_predict(gated_run: GatedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_TEST_TOKEN", "s3cret")
    options = ServeOptions(token_env="FEEDBACK_TEST_TOKEN")
    with Server(create_app(gated_run.store, "production", options)) as server:
        server.wait_ready()
        refused = server.call("POST", "/feedback", {"id": "x", "label": 1})
        assert refused.status == 401 and refused.json["rule"] == "auth"
        allowed = server.call("POST", "/feedback", {"id": "x", "label": 1}, {"authorization": "Bearer s3cret"})
        assert allowed.status == 200 and allowed.json == {"matched": 0, "unmatched": ["x"]}


REGRESSION_CELLS = [
    ("n_rows = 300  # rows of synthetic data\nmax_mae = 1.0  # quality gate: mean absolute error", ("parameters",)),
    ("import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import LinearRegression", ("export",)),
    (
        "rng = np.random.default_rng(0)\n"
        'X = pd.DataFrame({"a": rng.normal(size=n_rows), "b": rng.normal(size=n_rows)})\n'
        'y = 3 * X["a"] - 2 * X["b"] + rng.normal(scale=0.1, size=n_rows)\n'
        "model = LinearRegression()\n"
        "model.fit(X, y)",
        ("train",),
    ),
    (
        "from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score\n"
        "predicted = model.predict(X)\n"
        "metrics = {\n"
        '    "mae": float(mean_absolute_error(y, predicted)),\n'
        '    "rmse": float(mean_squared_error(y, predicted) ** 0.5),\n'
        '    "r2": float(r2_score(y, predicted)),\n'
        "}\n"
        'mae = metrics["mae"]\n'
        "assert mae < max_mae\n"
        'assert metrics["r2"] > 0.9',
        ("metrics",),
    ),
]


def test_regression_live_metrics_and_gate(tmp_path: Path) -> None:
    from nbtest_helpers import cell, write_notebook

    from nb2prod import api

    notebook = write_notebook(tmp_path / "regression.ipynb", [cell(src, *tags) for src, tags in REGRESSION_CELLS])
    build = Path(api.build(notebook).output_dir)
    store = tmp_path / "runs"
    trained = train_target(build, [], engine="python", store=store)
    assert trained.manifest.succeeded, trained.manifest.failure
    assert [(g["metric"], g["op"], g["value"]) for g in trained.manifest.gates] == [("mae", "<", 1.0), ("r2", ">", 0.9)]
    AliasStore(RunStore(store)).promote(trained.run_id, "production")

    rows = [{"a": i / 10, "b": -i / 20} for i in range(30)]
    options = ServeOptions(log_dir=str(tmp_path / "log"), feedback_min_labels=10)
    with Server(create_app(store, "production", options)) as server:
        server.wait_ready()
        answer = server.call("POST", "/predict", {"instances": rows}).json
        ids, outputs = answer["ids"], answer["predictions"]
        wait_remembered(server, 30)
        # truths 2 away from every prediction, alternately above and below
        truths = [o + (2.0 if i % 2 else -2.0) for i, o in enumerate(outputs)]
        sent = server.call("POST", "/feedback", [{"id": p, "label": t} for p, t in zip(ids, truths)])
        assert sent.json == {"matched": 30, "unmatched": []}
        metadata = server.call("GET", "/metadata").json
    live = metadata["monitoring"]["live"]
    assert live["task"] == "regression" and live["threshold"] is None
    assert live["metrics"]["mae"] == pytest.approx(2.0) and live["metrics"]["rmse"] == pytest.approx(2.0)
    mean = sum(truths) / len(truths)
    r2 = 1 - 30 * 4.0 / sum((t - mean) ** 2 for t in truths)
    assert live["metrics"]["r2"] == pytest.approx(r2)
    assert {g["metric"]: g["failing"] for g in live["gates"]} == {"mae": True, "r2": r2 <= 0.9}
    assert [a["name"] for a in metadata["alarms"]] == ["live-gate"]
    assert live["recorded"]["mae"] < 1.0


def test_a_promoted_run_is_judged_against_its_own_gates(
    gated_run: GatedRun, fraud_runs: FraudRuns, tmp_path: Path
) -> None:
    import shutil

    store = tmp_path / "runs"
    shutil.copytree(gated_run.store, store)
    for path in store.rglob("*"):  # the store freezes runs read-only; a copy must be writable
        path.chmod(path.stat().st_mode | 0o200)
    lenient = train_target(
        fraud_runs.build, [*GATED[:3], ("min_recall", "0.1"), ("min_precision", "0")], engine="python", store=store
    )
    assert lenient.manifest.succeeded
    options = ServeOptions(feedback_min_labels=20, reload_interval=0.2)
    with Server(create_app(store, "production", options)) as server:
        server.wait_ready()
        answer = server.call("POST", "/predict", {"instances": transactions(10, 40)}).json
        wait_remembered(server, 50)
        labels = [1] * 40 + [0] * 10  # live recall 0.25: below 0.3, above 0.1
        server.call("POST", "/feedback", [{"id": p, "label": y} for p, y in zip(answer["ids"], labels)])
        assert [a["name"] for a in server.call("GET", "/metadata").json["alarms"]] == ["live-gate"]

        AliasStore(RunStore(store)).promote(lenient.run_id, "production")
        deadline = time.monotonic() + 120
        while server.call("GET", "/metadata").json["run"] != lenient.run_id:
            assert time.monotonic() < deadline, "the server never swapped to the promoted run"
            time.sleep(0.1)
        metadata = server.call("GET", "/metadata").json
        live = metadata["monitoring"]["live"]
        assert live["run"] == lenient.run_id and live["labelled"] == 0  # a new window for the new model
        assert {g["metric"]: g["value"] for g in live["gates"]}["recall"] == 0.1
        assert live["recorded"] == RunStore(store).get(lenient.run_id).manifest.metrics
        assert [a for a in metadata["alarms"] if a["name"] == "live-gate"] == []

        answer = server.call("POST", "/predict", {"instances": transactions(10, 40)}).json
        wait_remembered(server, 100)
        server.call("POST", "/feedback", [{"id": p, "label": y} for p, y in zip(answer["ids"], labels)])
        live = server.call("GET", "/metadata").json["monitoring"]["live"]
        assert live["metrics"]["recall"] == pytest.approx(0.25) and live["alarm"] is False


def test_the_generated_package_serves_feedback_with_its_flags(
    gated_run: GatedRun, fraud_runs: FraudRuns, tmp_path: Path
) -> None:
    """NAME-serve from the package's own _serve/feedback.py: the same route, flags and files."""
    from tests.serve.conftest import call
    from tests.serve.test_cli_serve import Process

    env = {**os.environ, "PYTHONPATH": str(fraud_runs.build / "src")}
    argv = [sys.executable, "-m", "fraud_detection.serve", str(gated_run.store), "--port", "0"]
    argv += ["--log-dir", str(tmp_path / "log"), "--feedback-min-labels", "5", "--decision-threshold", "0.99"]
    argv += ["--feedback-window", "7"]
    server = Process(argv, env=env)
    try:
        port = server.port()
        server.wait_for(port, "/readyz", lambda a: a.status == 200)
        answer = call(port, "POST", "/predict", {"instances": transactions(10, 0)}).json
        server.wait_for(port, "/metadata", lambda a: a.json["monitoring"]["live"]["remembered"] == 10)
        sent = call(port, "POST", "/feedback", [{"id": p, "label": 1} for p in answer["ids"]])
        assert sent.json == {"matched": 10, "unmatched": []}
        metadata = call(port, "GET", "/metadata").json
    finally:
        server.stop()
    assert metadata["code"] == "package fraud_detection"
    live = metadata["monitoring"]["live"]
    assert live["window"] == 7 and live["labelled"] == 7 and live["min_labels"] == 5 and live["threshold"] == 0.99
    flagged = sum(s >= 0.99 for s in answer["predictions"][-7:])
    assert live["metrics"]["recall"] == pytest.approx(flagged / 7)
    assert [r["id"] for r in read_feedback(tmp_path / "log")] == answer["ids"]
