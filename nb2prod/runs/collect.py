"""Collects what a finished job left in its namespace: the model, `metrics` and the input contract.

Both engines call `collect`: the python engine with the namespace `run(params)` returned, the
papermill engine from a last cell it appends to the executed copy of the job, inside the kernel.
Everything goes into a folder (the run's staging folder), described by `collected.json`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from nb2prod.runs.artifacts import save_model
from nb2prod.runs.contract import describe_data, population_expression, to_jsonable
from nb2prod.runtime import UnloadableModelError, check_loadable, job_references

__all__ = ["UnloadableModelError", "check_loadable", "collect", "collect_cell_source", "job_references"]

OUTPUT_ENV = "NB2PROD_RUN_DIR"
REPORT = "collected.json"
PROBE_ROWS = 200


def _exported(package: str | None) -> dict[str, Any]:
    if not package:
        return {}
    import importlib

    try:
        module = importlib.import_module(package)
    except Exception:  # the job ran without its package importable: only its own names count
        return {}
    return {name: getattr(module, name) for name in getattr(module, "__all__", ()) if hasattr(module, name)}


def _head(value: Any, n: int) -> Any:
    if hasattr(value, "iloc"):
        return value.iloc[:n]
    try:
        return value[:n]
    except Exception:
        return value


def collect(
    namespace: dict[str, Any] | None,
    out_dir: str | os.PathLike[str] | None = None,
    model_variable: str = "model",
    contract_expression: str | None = None,
    model_format: str = "auto",
    inputs_expression: str | None = None,
    package: str | None = None,
) -> None:
    """Save model, metrics and contract from `namespace` (None: `__main__`'s) into `out_dir`
    (default: $NB2PROD_RUN_DIR).

    Expressions are evaluated over the job's names, then the package's exported names (`__all__`).
    """
    if namespace is None:  # in the papermill kernel: its `__main__` holds what the cells bound
        import sys

        namespace = vars(sys.modules["__main__"])
    out = Path(out_dir if out_dir is not None else os.environ[OUTPUT_ENV])
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"metrics": None, "model": None, "contract": None, "predict_inputs": None, "problems": []}
    problems: list[str] = report["problems"]

    metrics = namespace.get("metrics")
    if metrics is None:
        problems.append("the job bound no `metrics` dict")
    elif not isinstance(metrics, dict):
        problems.append(f"`metrics` is a {type(metrics).__name__}, not a dict")
    else:
        report["metrics"] = to_jsonable(metrics)

    scope = {**_exported(package), **namespace}
    fitted = None
    if contract_expression:
        try:
            fitted = eval(contract_expression, scope)  # noqa: S307 - the job's own expression
            report["contract"] = asdict(describe_data(fitted, contract_expression))
        except Exception as exc:  # the contract is evidence, not a reason to lose the run
            problems.append(f"input contract: evaluating {contract_expression!r} raised {type(exc).__name__}: {exc}")
            fitted = None
    else:
        problems.append("input contract: no fit(...) call found in the job and no contract_variable configured")

    if inputs_expression:
        try:
            value = eval(inputs_expression, scope)  # noqa: S307
            population = None
            source = population_expression(inputs_expression)
            if source is not None:
                try:
                    population = eval(source, scope)  # noqa: S307 - the data the example rows came from
                except Exception:
                    population = None
            report["predict_inputs"] = asdict(describe_data(value, inputs_expression, population=population))
        except Exception as exc:
            problems.append(f"predict inputs: evaluating {inputs_expression!r} raised {type(exc).__name__}: {exc}")

    from nb2prod.monitor.baseline import collect_baseline

    problems.extend(
        collect_baseline(
            scope,
            out,
            model=namespace.get(model_variable),
            fitted=fitted,
            inputs_expression=inputs_expression,
            features_expression=contract_expression,
            package=package,
        )
    )

    if model_variable in namespace:
        check_loadable(namespace[model_variable], model_variable)
        probe = _head(fitted, PROBE_ROWS) if fitted is not None else None
        artifact = save_model(namespace[model_variable], out, model_variable, probe=probe, fmt=model_format)
        report["model"] = asdict(artifact)
    else:
        problems.append(f"the job bound no model variable {model_variable!r}")

    (out / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")


def collect_cell_source(
    model_variable: str,
    contract_expression: str | None,
    model_format: str = "auto",
    inputs_expression: str | None = None,
    package: str | None = None,
) -> str:
    """The last cell the papermill engine appends to the job it executes."""
    return (
        "# nb2prod: save the model, metrics and input contract of this run into the run folder\n"
        "from nb2prod.runs.collect import collect as _nb2prod_collect\n\n"
        "_nb2prod_collect(\n"
        "    None,  # the kernel's namespace (the job may have bound `globals` to something else)\n"
        f"    model_variable={model_variable!r},\n"
        f"    contract_expression={contract_expression!r},\n"
        f"    model_format={model_format!r},\n"
        f"    inputs_expression={inputs_expression!r},\n"
        f"    package={package!r},\n"
        ")\n"
    )
