"""What `nb2prod verify` reads out of a finished job: metrics and predictions on example inputs.

Standard library only: the same source runs as the last cell of the original notebook (in the
author's environment) and as a script in the clean environment made from `requirements.lock`,
where the built package is installed and nb2prod is not.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from typing import Any

N_EXAMPLES = 5


def _plain(value: Any) -> Any:
    """Numbers, strings, lists and dicts of them, from numpy and pandas values too."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "columns") and hasattr(value, "itertuples"):
        return [_plain(list(row)) for row in value.itertuples(index=False)]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if hasattr(value, "item"):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def _head(value: Any) -> Any:
    if hasattr(value, "iloc"):
        return value.iloc[:N_EXAMPLES]
    try:
        return value[:N_EXAMPLES]
    except Exception:  # noqa: BLE001 - not sliceable: used whole
        return value


def encode_inputs(value: Any) -> dict[str, Any]:
    """Example inputs as JSON, with what it takes to rebuild them (`decode_inputs`)."""
    module = type(value).__module__
    if module.startswith("pandas") and hasattr(value, "columns"):
        return {
            "kind": "dataframe",
            "columns": [str(c) for c in value.columns],
            "dtypes": [str(t) for t in value.dtypes],
            "rows": _plain(value),
        }
    if module.startswith("pandas") and hasattr(value, "dtype"):
        return {"kind": "series", "name": _plain(value.name), "dtype": str(value.dtype), "rows": _plain(value)}
    if module.startswith("numpy") and hasattr(value, "dtype"):
        return {"kind": "ndarray", "dtype": str(value.dtype), "rows": _plain(value)}
    if isinstance(value, (list, tuple)):
        return {"kind": "list", "rows": _plain(value)}
    return {"kind": f"object:{module}.{type(value).__qualname__}", "rows": None}


def decode_inputs(data: dict[str, Any]) -> Any:
    kind = data.get("kind")
    if kind == "dataframe":
        import pandas as pd

        frame = pd.DataFrame(data["rows"], columns=data["columns"])
        return frame.astype(dict(zip(data["columns"], data["dtypes"])))
    if kind == "series":
        import pandas as pd

        return pd.Series(data["rows"], name=data.get("name"), dtype=data["dtype"])
    if kind == "ndarray":
        import numpy as np

        return np.asarray(data["rows"], dtype=data["dtype"])
    if kind == "list":
        return data["rows"]
    return None


def _predict(predict: Any, model: Any, inputs: Any) -> Any:
    try:
        return {"values": _plain(list(predict(model, inputs)))}
    except Exception as exc:  # noqa: BLE001 - reported as a difference, not raised
        return {"error": f"{type(exc).__name__}: {exc}"}


def report(
    namespace: dict[str, Any],
    out_path: str,
    model_variable: str,
    inputs_expression: str | None,
    predict: Any = None,
    given_inputs: Any = None,
    scope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write metrics, example inputs and predictions of the job that filled `namespace`.

    The example inputs expression is evaluated over `namespace`, then `scope` (for the package:
    its train module's names and its exported names)."""
    result: dict[str, Any] = {"metrics": None, "inputs": None, "predictions": None, "given": None, "problems": []}
    metrics = namespace.get("metrics")
    if isinstance(metrics, dict):
        result["metrics"] = _plain(metrics)
    elif metrics is not None:
        result["problems"].append(f"`metrics` is a {type(metrics).__name__}, not a dict")
    model = namespace.get(model_variable)
    if predict is None and model is not None:
        predict = lambda m, x: m.predict(x)  # noqa: E731 - a model without a predict cell
    if model is None:
        result["problems"].append(f"no model variable {model_variable!r}")
    elif inputs_expression:
        try:
            inputs = _head(eval(inputs_expression, {**(scope or {}), **namespace}))  # noqa: S307 - the job's own
        except Exception as exc:  # noqa: BLE001
            result["problems"].append(f"example inputs {inputs_expression!r}: {type(exc).__name__}: {exc}")
        else:
            result["inputs"] = encode_inputs(inputs)
            result["predictions"] = _predict(predict, model, inputs)
    if model is not None and given_inputs is not None:
        result["given"] = _predict(predict, model, given_inputs)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, sort_keys=True)
    return result


def _failure(exc: BaseException, package: str) -> dict[str, Any]:
    """The error of the job and the notebook cell it came from (the package's source map)."""
    import importlib

    cell = None
    try:
        runtime = importlib.import_module(f"{package}._runtime")
        source_map = runtime.source_map()
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            parts = frame.filename.replace("\\", "/").rsplit("/", 2)
            if len(parts) < 2 or parts[-2] != package:
                continue
            for entry in source_map.get(parts[-1], ()):
                if entry[0] <= (frame.lineno or 0) <= entry[1]:
                    cell = entry[2]
                    break
            if cell is not None:
                break
        message = runtime.describe_exception(exc, source_map)
    except Exception:  # noqa: BLE001
        message = f"{type(exc).__name__}: {exc}"
    return {"type": type(exc).__name__, "message": message, "cell": cell}


def _exported(package: str) -> dict[str, Any]:
    """The package's exported names (`__all__`), as the generated contract test sees them."""
    import importlib

    module = importlib.import_module(package)
    return {name: getattr(module, name) for name in getattr(module, "__all__", ()) if hasattr(module, name)}


def run_job(spec_path: str) -> int:
    """In the clean environment: run the installed package's job, then report like the notebook."""
    import importlib

    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    package = spec["package"]
    out: dict[str, Any] = {"error": None}
    try:
        runtime = importlib.import_module(f"{package}._runtime")
        train = importlib.import_module(f"{package}.train")
        params = importlib.import_module(f"{package}.params")
        predict_module = importlib.import_module(f"{package}.predict")
    except Exception as exc:  # noqa: BLE001 - e.g. a requirement missing from the lock
        out["error"] = {"type": type(exc).__name__, "message": f"{type(exc).__name__}: {exc}", "cell": None}
        with open(spec["out"], "w", encoding="utf-8") as handle:
            json.dump(out, handle)
        return 0
    try:
        with runtime.working_directory(runtime.job_workdir(runtime.__file__, spec["workdir"])):
            namespace = train.run(params.Params())
    except BaseException as exc:  # noqa: BLE001 - everything the job raises is reported
        if isinstance(exc, KeyboardInterrupt):
            raise
        out["error"] = _failure(exc, package)
        with open(spec["out"], "w", encoding="utf-8") as handle:
            json.dump(out, handle)
        return 0
    given = decode_inputs(spec["given"]) if spec.get("given") else None
    report(
        namespace,
        spec["out"],
        spec["model_variable"],
        spec["inputs_expression"],
        predict_module.predict,
        given,
        scope={**_exported(package), **vars(train)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_job(sys.argv[1]))
