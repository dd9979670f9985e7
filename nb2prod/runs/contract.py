"""The input contract: names, dtypes and example rows of what the model was fitted on.

The fitted data is found from the `fit(...)` call in the job's cells (the call on the model
variable, else the last `fit` call): its first positional argument (or `X=`) is evaluated in the
job's final namespace. Config `contract_variable` (or `example_inputs`) names it explicitly.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from nb2prod.runs.record import Contract, Feature

N_EXAMPLES = 5


@dataclass(frozen=True)
class FitCall:
    expression: str  # source of the fitted-data argument, e.g. "X_train"
    receiver: str  # source of the object whose fit is called, e.g. "model"
    cell: int  # index of the source in the list given to `find_fit_call`
    line: int


def find_fit_call(sources: list[str], model_variable: str) -> FitCall | None:
    """The `fit(...)` call that trains the model, preferring one on `model_variable`."""
    calls: list[tuple[int, FitCall]] = []
    for index, source in enumerate(sources):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        assigned_to: dict[int, set[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {t.id for t in targets if isinstance(t, ast.Name)}
                if node.value is not None:
                    for inner in ast.walk(node.value):
                        assigned_to[id(inner)] = names
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"):
                continue
            arg = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "X"), None)
            if arg is None:
                continue
            receiver = ast.unparse(node.func.value)
            on_model = receiver == model_variable or model_variable in assigned_to.get(id(node), set())
            call = FitCall(ast.unparse(arg), receiver, index, node.lineno)
            calls.append((1 if on_model else 0, call))
    if not calls:
        return None
    best = max(rank for rank, _ in calls)
    return [call for rank, call in calls if rank == best][-1]


def to_jsonable(value: Any) -> Any:
    """Numpy/pandas scalars and containers as plain JSON values (NaN and NaT become null)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    module = type(value).__module__
    if module.startswith("numpy"):
        if hasattr(value, "tolist"):
            return to_jsonable(value.tolist())
        if hasattr(value, "item"):
            return to_jsonable(value.item())
    if module.startswith("pandas"):
        if hasattr(value, "isoformat"):
            try:
                return value.isoformat()
            except ValueError:  # NaT
                return None
        if hasattr(value, "to_dict"):
            return to_jsonable(value.to_dict())
        try:
            import pandas as pd

            if pd.isna(value):
                return None
        except (TypeError, ValueError, ImportError):
            pass
    if hasattr(value, "item"):
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return repr(value)


def describe_data(value: Any, expression: str, n_examples: int = N_EXAMPLES) -> Contract:
    """A contract for a DataFrame, Series, 2-D/1-D array, list of records or list of values."""
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        if isinstance(value, pd.Series):
            value = value.to_frame(name=str(value.name) if value.name is not None else "x0")
            kind = "series"
        else:
            kind = "dataframe"
        if isinstance(value, pd.DataFrame):
            features = tuple(Feature(str(c), str(t)) for c, t in value.dtypes.items())
            rows = value.head(n_examples).to_dict(orient="records")
            examples = tuple({str(k): to_jsonable(v) for k, v in row.items()} for row in rows)
            return Contract(expression, kind, features, int(len(value)), examples)
    if module.startswith("numpy") and hasattr(value, "ndim"):
        import numpy as np

        array = np.asarray(value)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        if array.ndim == 2:
            names = [f"x{i}" for i in range(array.shape[1])]
            features = tuple(Feature(n, str(array.dtype)) for n in names)
            examples = tuple({n: to_jsonable(v) for n, v in zip(names, row)} for row in array[:n_examples].tolist())
            return Contract(expression, "ndarray", features, int(array.shape[0]), examples)
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(row, dict) for row in value):
            names = sorted({str(k) for row in value for k in row})
            features = tuple(Feature(n, _py_type(next((row[n] for row in value if n in row), None))) for n in names)
            examples = tuple(to_jsonable(dict(row)) for row in value[:n_examples])
            return Contract(expression, "records", features, len(value), examples)
        first = value[0]
        if isinstance(first, (list, tuple)):
            names = [f"x{i}" for i in range(len(first))]
            features = tuple(Feature(n, _py_type(v)) for n, v in zip(names, first))
            examples = tuple({n: to_jsonable(v) for n, v in zip(names, row)} for row in value[:n_examples])
            return Contract(expression, "sequence", features, len(value), examples)
        examples = tuple({"x0": to_jsonable(v)} for v in value[:n_examples])
        return Contract(expression, "sequence", (Feature("x0", _py_type(first)),), len(value), examples)
    return Contract(expression, f"object:{type(value).__module__}.{type(value).__qualname__}", (), None, ())


def _py_type(value: Any) -> str:
    return type(value).__name__


def rows_for_model(rows: list[dict[str, Any]], contract: Contract) -> Any:
    """Input rows shaped like the fitted data: columns in contract order, cast to its dtypes.

    Raises ValueError naming the first missing column.
    """
    names = [f.name for f in contract.features]
    for number, row in enumerate(rows, 1):
        missing = [n for n in names if n not in row]
        if missing:
            raise ValueError(f"row {number} has no column {missing[0]!r} (the model was fitted on {', '.join(names)})")
    if contract.kind in ("dataframe", "series"):
        import pandas as pd

        frame = pd.DataFrame([{n: row[n] for n in names} for row in rows], columns=names)
        for feature in contract.features:
            try:
                frame[feature.name] = frame[feature.name].astype(feature.dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {feature.name!r} cannot be read as {feature.dtype} ({exc})") from None
        return frame
    if contract.kind == "ndarray":
        import numpy as np

        dtype = contract.features[0].dtype if contract.features else None
        return np.asarray([[row[n] for n in names] for row in rows], dtype=dtype)
    if contract.kind == "sequence":
        if names == ["x0"]:
            return [row["x0"] for row in rows]
        return [[row[n] for n in names] for row in rows]
    return rows
