"""The input contract: names, dtypes, example rows and what training saw of each input field.

Two contracts are recorded per run. What the model was fitted on: found from the `fit(...)` call
in the job's cells (the call on the model variable, else the last `fit` call), its first
positional argument (or `X=`) evaluated in the job's final namespace; config `contract_variable`
names it explicitly. And what predict receives (`predict_inputs`): the rows the notebook fed
predict (config `example_inputs`), with ranges and categories taken from the data those rows were
cut from (`test_df[COLS]` for `test_df[COLS].head()`).

Per field the contract holds the name, dtype, JSON kind, nullability (missing values seen),
min/max seen (numeric) and the categories seen (low-cardinality fields). Serving, batch scoring
and drift check records against it with `validate_records`, whose logic lives in the shipped
runtime (`nb2prod/runtime.py`, standard library only) so generated packages validate the same way.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from nb2prod.runs.record import Contract, Feature
from nb2prod.runtime import (
    CONTRACT_RULES,
    FieldContract,
    InputContract,
    Violation,
    as_input_contract,
    kind_of_dtype,
    run_input_contract,
    validate_records,
)

__all__ = [
    "CONTRACT_RULES",
    "FieldContract",
    "InputContract",
    "Violation",
    "as_input_contract",
    "describe_data",
    "find_fit_call",
    "population_expression",
    "rows_for_model",
    "run_input_contract",
    "serving_contract",
    "to_jsonable",
    "validate_records",
]

N_EXAMPLES = 5
MAX_CATEGORIES = 20  # a field with at most this many distinct values records them as its categories
_SLICING_METHODS = ("head", "tail", "sample", "iloc", "loc")


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


def population_expression(expression: str) -> str | None:
    """The data a few example rows were cut from: `df[cols]` for `df[cols].head()`, `X` for `X[:5]`.

    None when the expression takes no rows from something larger.
    """
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return None
    inner = None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SLICING_METHODS:
        inner = node.func.value
    elif isinstance(node, ast.Subscript):
        target = node.value
        if isinstance(target, ast.Attribute) and target.attr in ("iloc", "loc"):
            inner = target.value
        elif isinstance(node.slice, ast.Slice):
            inner = target
    if inner is None:
        return None
    return ast.unparse(inner)


def describe_data(value: Any, expression: str, n_examples: int = N_EXAMPLES, population: Any = None) -> Contract:
    """A contract for a DataFrame, Series, 2-D/1-D array, list of records or list of values.

    Examples are the first rows of `value`; ranges, categories and nullability are taken from
    `population` (the data `value` was cut from) when it has the same fields, else from `value`.
    """
    contract = _describe(value, expression, n_examples)
    stats_from, stats_expression = value, None
    if population is not None:
        candidate = _describe(population, expression, 0)
        if candidate.kind == contract.kind and [f.name for f in candidate.features] == [
            f.name for f in contract.features
        ]:
            stats_from, stats_expression = population, population_expression(expression)
    if not contract.features:
        return contract
    features = tuple(_with_stats(f, column) for f, column in zip(contract.features, _columns(stats_from, contract)))
    n_rows = contract.n_rows if stats_expression is None else _length(stats_from)
    return Contract(contract.expression, contract.kind, features, n_rows, contract.examples, stats_expression)


def _describe(value: Any, expression: str, n_examples: int) -> Contract:
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


def _length(value: Any) -> int | None:
    try:
        return int(len(value))
    except TypeError:
        return None


def _columns(value: Any, contract: Contract) -> list[list[Any]]:
    """The values of each contract field in `value`, as plain Python lists (NaN kept as None)."""
    names = [f.name for f in contract.features]
    module = type(value).__module__
    if module.startswith("pandas"):
        import pandas as pd

        frame = value.to_frame(name=names[0]) if isinstance(value, pd.Series) else value
        return [_plain(frame[column]) for column in frame.columns]
    if module.startswith("numpy"):
        import numpy as np

        array = np.asarray(value)
        if array.ndim == 1:
            array = array.reshape(-1, 1)
        return [_plain(array[:, i]) for i in range(array.shape[1])]
    if contract.kind == "records":
        return [[row.get(n) for row in value] for n in names]
    if value and isinstance(value[0], (list, tuple)):
        return [[row[i] if i < len(row) else None for row in value] for i in range(len(names))]
    return [list(value)]


def _plain(column: Any) -> list[Any]:
    values = column.tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _with_stats(feature: Feature, values: list[Any]) -> Feature:
    """The feature with its JSON kind, nullability, range and (low cardinality) categories."""
    present = [v for v in values if v is not None and not _is_missing(v)]
    nullable = len(present) < len(values)
    kind = kind_of_dtype(feature.dtype)
    if kind == "any":
        kinds = {_value_kind(v) for v in present}
        kind = kinds.pop() if len(kinds) == 1 else "any"
    low = high = None
    categories = None
    if kind in ("int", "float") and present:
        numbers = [float(v) for v in present]
        low, high = min(numbers), max(numbers)
        if kind == "int":
            low, high = int(low), int(high)
    if kind in ("int", "bool", "str") and present:
        distinct = set(to_jsonable(v) for v in present)
        if len(distinct) <= MAX_CATEGORIES:
            try:
                categories = tuple(sorted(distinct))
            except TypeError:
                categories = tuple(sorted(distinct, key=repr))
    return Feature(feature.name, feature.dtype, kind, nullable, low, high, categories)


def _is_missing(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if type(value).__name__ in ("NaTType", "NAType"):
        return True
    return False


def _value_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (datetime, date)):
        return "datetime"
    return "any"


def serving_contract(manifest: Any) -> InputContract | None:
    """The contract predict is held to for a run record (RunManifest or run.json dict)."""
    data = manifest if isinstance(manifest, dict) else manifest.to_dict()
    return run_input_contract(data)


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
