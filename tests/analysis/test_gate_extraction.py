"""Quality gates recorded for live monitoring: the metrics cell's simple comparisons, read from its
asserts into nb2prod.json `gates`; every other assert is listed as not monitored live."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.analysis.gates import quality_gates
from nb2prod.cli import cli

METRICS_CELL = """x = metrics["acc"]
assert metrics["recall"] >= min_recall, "recall below gate"
assert 0.8 <= metrics["auc"]
assert metrics["rmse"] < 3.0
assert x > 0.9
assert -1 < metrics["r2"] <= 1 and metrics["mae"] <= max_mae
assert len(metrics) == 6
assert metrics["a"] > metrics["b"]
assert metrics["recall"] == 1.0
if metrics:
    assert metrics.get("f1", 0) > 0.5
"""


def test_simple_comparisons_become_gates_with_numbers_or_parameters() -> None:
    gates, other = quality_gates(METRICS_CELL, 4, ["min_recall", "max_mae"])
    found = [g.to_dict() for g in gates]
    assert found == [
        {"metric": "recall", "op": ">=", "parameter": "min_recall", "cell": 4, "line": 2},
        {"metric": "auc", "op": ">=", "value": 0.8, "cell": 4, "line": 3},  # flipped: 0.8 <= auc
        {"metric": "rmse", "op": "<", "value": 3.0, "cell": 4, "line": 4},
        {"metric": "acc", "op": ">", "value": 0.9, "cell": 4, "line": 5},  # x = metrics["acc"]
        {"metric": "r2", "op": ">", "value": -1.0, "cell": 4, "line": 6},
        {"metric": "r2", "op": "<=", "value": 1.0, "cell": 4, "line": 6},
        {"metric": "mae", "op": "<=", "parameter": "max_mae", "cell": 4, "line": 6},
    ]
    assert [(u.line, u.text) for u in other] == [
        (7, "len(metrics) == 6"),
        (8, "metrics['a'] > metrics['b']"),
        (9, "metrics['recall'] == 1.0"),
        (11, "metrics.get('f1', 0) > 0.5"),
    ]
    assert other[0].describe() == "cell 5, line 7: assert len(metrics) == 6: not monitored live"


def test_a_name_is_a_metric_only_while_bound_to_one_and_unknown_names_are_not_thresholds() -> None:
    code = 'x = metrics["acc"]\nx = 0.5\nassert x > 0.1\nassert metrics["acc"] > limit\n'
    gates, other = quality_gates(code, 0, [])
    assert gates == ()
    assert [u.line for u in other] == [3, 4]  # `x` no longer holds a metric; `limit` is no parameter


def test_the_build_records_gates_and_inspect_lists_the_unmonitored(tmp_path: Path) -> None:
    notebook = write_notebook(
        tmp_path / "gated.ipynb",
        [
            cell("threshold = 0.5  # quality gate: smallest score\nvalue = 3", "parameters"),
            cell("model = value * 2", "train"),
            cell(
                'metrics = {"score": model / 10, "n": 2}\n'
                'assert metrics["score"] >= threshold\n'
                'assert metrics["n"] % 2 == 0\n',
                "metrics",
            ),
        ],
    )
    result = api.build(notebook)
    record = json.loads((Path(result.output_dir) / "nb2prod.json").read_text())
    assert record["gates"] == [{"metric": "score", "op": ">=", "parameter": "threshold", "cell": 2, "line": 2}]
    assert record["gates_not_monitored"] == [{"cell": 2, "line": 3, "text": "metrics['n'] % 2 == 0"}]

    shown = CliRunner().invoke(cli, ["inspect", str(notebook)])
    assert shown.exit_code == 0, shown.output
    assert "score >= threshold  (cell 3, line 2; live)" in shown.output
    assert "cell 3, line 3: assert metrics['n'] % 2 == 0: not monitored live" in shown.output
    data = json.loads(CliRunner().invoke(cli, ["inspect", str(notebook), "--format", "json"]).output)
    assert data["gates_not_monitored"] == record["gates_not_monitored"]
