"""Quality gates of metrics cells: asserts rewritten on the syntax tree, every other statement kept."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.analysis.gates import gates_to_errors
from nb2prod.runtime import QualityGateError, quality_gate_failed


def run_gated(code: str, **names: object) -> dict:
    """Execute the rewritten code the way the job does (`_nb2prod` is the shipped runtime)."""
    from nb2prod import runtime

    namespace = {"_nb2prod": runtime, **names}
    exec(compile(gates_to_errors(code), "<metrics>", "exec"), namespace)  # noqa: S102 - test code
    return namespace


def test_a_statement_after_an_assert_on_the_same_line_is_kept() -> None:
    namespace = run_gated('metrics = {"a": 1}\nassert metrics["a"] > 0; metrics["b"] = 2')
    assert namespace["metrics"] == {"a": 1, "b": 2}


def test_an_assert_after_a_statement_on_the_same_line_compiles_and_gates() -> None:
    code = 'metrics = {"a": x}; assert x > 0, "x must be positive"; after = 1'
    assert run_gated(code, x=3)["after"] == 1
    with pytest.raises(QualityGateError, match="x must be positive"):
        run_gated(code, x=0)


def test_statements_and_their_order_are_kept_and_the_line_count_too() -> None:
    code = (
        "log = []\n"
        "log.append(1); assert len(log) == 1; log.append(2)\n"
        "assert (\n"
        "    len(log) == 2  # two entries\n"
        "), (\n"
        '    "two"\n'
        ")\n"
        "log.append(3)\n"
        "if log: assert log[0] == 1; log.append(4)\n"
        "for item in list(log):\n"
        "    assert item < 10, f'{item} too big'\n"
        "ñ = 1; assert ñ == 1; log.append(5)\n"
    )
    rewritten = gates_to_errors(code)
    assert rewritten.count("\n") == code.count("\n")
    assert run_gated(code)["log"] == [1, 2, 3, 4, 5]
    # no assert statement is left: the gates hold under `python -O` too
    assert not any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(rewritten)))


def test_a_failing_gate_keeps_the_message_and_evaluates_it_only_on_failure() -> None:
    calls = []

    def message() -> str:
        calls.append(1)
        return "computed"

    run_gated("assert ok, message(); done = True", ok=True, message=message)
    assert calls == []
    with pytest.raises(QualityGateError, match="computed"):
        run_gated("assert ok, message(); done = True", ok=False, message=message)
    with pytest.raises(QualityGateError, match=r"quality gate failed: ok"):
        run_gated("assert ok", ok=False)
    with pytest.raises(QualityGateError, match="plain"):
        quality_gate_failed("plain")


def test_asserts_inside_functions_stay_asserts() -> None:
    code = "def check(v):\n    assert v, 'in a function'\n    return v\nresult = check(1)"
    rewritten = gates_to_errors(code)
    assert "assert v, 'in a function'" in rewritten
    assert run_gated(code)["result"] == 1


def test_the_built_job_keeps_the_statement_after_the_assert(tmp_path: Path) -> None:
    """The defect: `assert ...; metrics[...] = ...` lost the second statement, and
    `metrics = {...}; assert ...` did not build (IndentationError)."""
    notebook = write_notebook(
        tmp_path / "gates.ipynb",
        [
            cell("model = 2", "train"),
            cell('metrics = {"m": model}; assert model > 1\nassert model > 0; metrics["kept"] = True', "metrics"),
        ],
    )
    output = Path(api.build(notebook, output=tmp_path / "out").output_dir)
    job = (output / "src" / "gates" / "_job.py").read_text()
    assert 'metrics["kept"] = True' in job
    nb = json.loads((output / "job" / "train.ipynb").read_text())
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert any('metrics["kept"] = True' in s for s in sources)
