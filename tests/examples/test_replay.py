"""examples/fraud/replay.py runs the fraud story against a real server on 127.0.0.1 (real training
runs, real `nb2prod serve`, real HTTP), with bounded traffic; every step of its timeline is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = [
    "train v1",
    "promote v1",
    "serve",
    "normal traffic",
    "fraud wave: drift alarm",
    "offline drift of the log",
    "labels: live recall falls",
    "nb2prod monitor",
    "explain one flag",
    "retrain v2 on recent data",
    "promote v2 (hot reload)",
    "roll back to v1",
    "forward again to v2",
    "v2 on the wave",
]


def _example_files() -> dict[str, bytes]:
    """Every file under examples/fraud (the notebook, the replay), with its content."""
    folder = REPO / "examples" / "fraud"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def timeline(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("replay")
    before = _example_files()
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "fraud" / "replay.py"),
            "--json",
            "--workdir",
            str(work),
            "--normal",
            "400",
            "--shifted",
            "800",
            "--verify",
            "400",
            "--trees",
            "20",
            "--drift-window",
            "400",
            "--feedback-window",
            "400",
            "--label-batch",
            "200",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert _example_files() == before, "the replay touched the example's folder"
    data = json.loads(result.stdout)
    data["returncode"] = result.returncode
    data["stderr"] = result.stderr
    return data


def _step(timeline: dict, event: str) -> dict:
    (step,) = [s for s in timeline["steps"] if s["event"] == event]
    failed = [e["expect"] for e in step["expectations"] if not e["ok"]]
    assert step["ok"] and not failed, f"{event}: expected {failed}; figures {step['figures']}"
    return step["figures"]


def test_the_timeline_has_every_step_in_order_and_exits_0(timeline: dict) -> None:
    assert [s["event"] for s in timeline["steps"]] == STEPS, timeline["steps"][-1]
    times = [s["t"] for s in timeline["steps"]]
    assert times == sorted(times)
    assert timeline["ok"] and timeline["returncode"] == 0, timeline["stderr"][-2000:]


def test_train_promote_serve(timeline: dict) -> None:
    v1 = _step(timeline, "train v1")
    assert v1["recall"] >= v1["gate"]
    _step(timeline, "promote v1")
    served = _step(timeline, "serve")
    assert served["drift-window"] and served["feedback-window"]


def test_normal_traffic_raises_no_alarm(timeline: dict) -> None:
    normal = _step(timeline, "normal traffic")
    assert normal["requests"] == 400 and normal["failed"] == 0
    assert 0 < normal["p50_ms"] <= normal["p99_ms"]
    assert normal["alarms"] == []


def test_the_fraud_wave_fires_the_drift_alarm(timeline: dict) -> None:
    wave = _step(timeline, "fraud wave: drift alarm")
    assert wave["failed"] == 0 and wave["nb2prod_drift_alarm"] == 1.0
    assert set(wave["drifted"]) & {"merchant_category", "velocity_1h", "card_present"}
    offline = _step(timeline, "offline drift of the log")
    assert offline["cli_exit"] == 1 and offline["library_drifted"]


def test_labels_bring_live_recall_below_its_gate(timeline: dict) -> None:
    labels = _step(timeline, "labels: live recall falls")
    assert labels["live_recall"] < labels["gate"]
    assert "live-gate" in labels["alarms"] and labels["nb2prod_live_gate_failing"] == 1.0
    wave = _step(timeline, "fraud wave: drift alarm")
    assert wave["v1_recall_on_wave"] < labels["gate"]  # the client's own count agrees


def test_nb2prod_monitor_shows_both_alarms(timeline: dict) -> None:
    shown = _step(timeline, "nb2prod monitor")
    assert shown["exit"] == 1 and {"drift", "live-gate"} <= set(shown["alarms"])


def test_one_flag_is_explained_by_three_features(timeline: dict) -> None:
    explained = _step(timeline, "explain one flag")
    assert explained["status"] == 200 and explained["score"] >= 0.5
    assert len(explained["top_reasons"]) == 3


def test_retrain_promote_rollback_forward_without_a_failed_request(timeline: dict) -> None:
    v1 = _step(timeline, "train v1")
    v2 = _step(timeline, "retrain v2 on recent data")
    assert v2["run"] != v1["run"]
    for event in ("promote v2 (hot reload)", "roll back to v1", "forward again to v2"):
        swap = _step(timeline, event)
        assert swap["failed"] == 0 and swap["requests"] > 0
        assert swap["serving_after_s"] is not None and swap["command_s"] > 0
    after = _step(timeline, "v2 on the wave")
    assert after["runs"] == [v2["run"]]
    assert after["v2_recall"] > after["v1_recall"]
    assert v2["recent_rows"] == 400 + 800  # every labelled prediction of the log
