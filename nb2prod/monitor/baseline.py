"""The baseline a run is judged against: compact distributions saved by training (`baseline.json`).

For each input predict receives (the raw columns, on held-out data), each model feature (what
`fit` was called with) and the model's scores on the held-out inputs: numeric columns keep
quantile edges (percentiles) and the count of values in each interval, categorical columns
(strings, booleans, integers with few distinct values) their value counts; both keep the number of
values and the missing rate. Kilobytes, not the data.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BASELINE_FILE = "baseline.json"
BASELINE_VERSION = 1
N_QUANTILES = 100  # edges at the 1st..99th percentiles: KS and PSI are computed on these
MAX_CATEGORIES = 20  # integers with at most this many distinct values are categorical
_SLICERS = frozenset({"head", "tail", "sample"})


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    kind: str  # "numeric" | "categorical"
    count: int  # values seen, missing ones included
    missing: int
    edges: tuple[float, ...] = ()  # numeric: increasing cut points
    counts: tuple[int, ...] = ()  # numeric: values in (-inf, e0], (e0, e1], ..., (e_last, inf)
    categories: dict[str, int] = field(default_factory=dict)  # categorical: value (as text) -> count
    mean: float | None = None
    std: float | None = None

    @property
    def missing_rate(self) -> float:
        return self.missing / self.count if self.count else 0.0


@dataclass(frozen=True)
class Baseline:
    inputs: tuple[ColumnProfile, ...]  # what predict receives (held-out rows)
    features: tuple[ColumnProfile, ...]  # what the model was fitted on
    score: ColumnProfile | None  # the package's predict on the held-out inputs
    inputs_expression: str | None = None
    features_expression: str | None = None
    version: int = BASELINE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        def profile(item: dict[str, Any]) -> ColumnProfile:
            return ColumnProfile(
                name=str(item["name"]),
                kind=str(item["kind"]),
                count=int(item["count"]),
                missing=int(item["missing"]),
                edges=tuple(float(e) for e in item.get("edges", ())),
                counts=tuple(int(c) for c in item.get("counts", ())),
                categories={str(k): int(v) for k, v in (item.get("categories") or {}).items()},
                mean=item.get("mean"),
                std=item.get("std"),
            )

        return cls(
            inputs=tuple(profile(p) for p in data.get("inputs", ())),
            features=tuple(profile(p) for p in data.get("features", ())),
            score=profile(data["score"]) if data.get("score") else None,
            inputs_expression=data.get("inputs_expression"),
            features_expression=data.get("features_expression"),
            version=int(data.get("version", BASELINE_VERSION)),
        )

    def profiles(self, section: str) -> tuple[ColumnProfile, ...]:
        if section == "score":
            return (self.score,) if self.score is not None else ()
        return self.inputs if section == "inputs" else self.features


def read_baseline(run_dir: Path) -> Baseline | None:
    path = Path(run_dir) / BASELINE_FILE
    if not path.is_file():
        return None
    return Baseline.from_dict(json.loads(path.read_text(encoding="utf-8")))


def full_expression(expression: str) -> str:
    """The example-inputs expression without a trailing `.head()`, `.tail()`, `.sample()`,
    `.iloc[...]` or `[:n]`: the held-out rows the notebook took a few examples of."""
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return expression
    while True:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _SLICERS:
            node = node.func.value
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr in ("iloc", "loc")
        ):
            node = node.value.value
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            node = node.value
        else:
            return ast.unparse(node)


def to_frame(value: Any) -> Any:
    """A pandas DataFrame of `value` (DataFrame, Series, 1-D/2-D array, records, rows), or None."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return value
    if isinstance(value, pd.Series):
        return value.to_frame(name=str(value.name) if value.name is not None else "x0")
    try:
        import numpy as np

        if isinstance(value, np.ndarray):
            array = value.reshape(-1, 1) if value.ndim == 1 else value
            if array.ndim == 2:
                return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
            return None
        if isinstance(value, (list, tuple)) and value:
            if all(isinstance(row, dict) for row in value):
                return pd.DataFrame.from_records(list(value))
            if isinstance(value[0], (list, tuple)):
                return pd.DataFrame(list(value), columns=[f"x{i}" for i in range(len(value[0]))])
            return pd.DataFrame({"x0": list(value)})
    except (TypeError, ValueError):
        return None
    return None


def is_categorical(series: Any) -> bool:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return True
    if pd.api.types.is_integer_dtype(dtype):
        return int(series.nunique(dropna=True)) <= MAX_CATEGORIES
    return False


def category_key(value: Any) -> str:
    """How a categorical value is counted: the same text for 1, 1.0 and numpy's 1."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if hasattr(value, "item"):
        value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
    return str(value)


def profile_column(name: str, series: Any) -> ColumnProfile:
    import numpy as np
    import pandas as pd

    count = int(len(series))
    missing = int(series.isna().sum())
    present = series.dropna()
    if is_categorical(series):
        counts: dict[str, int] = {}
        for value, n in present.value_counts().items():
            key = category_key(value)
            counts[key] = counts.get(key, 0) + int(n)
        return ColumnProfile(name, "categorical", count, missing, categories=dict(sorted(counts.items())))
    values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ColumnProfile(name, "numeric", count, missing)
    edges = np.unique(np.quantile(values, np.arange(1, N_QUANTILES) / N_QUANTILES))
    bins = np.searchsorted(edges, values, side="left")
    interval_counts = np.bincount(bins, minlength=len(edges) + 1)
    return ColumnProfile(
        name,
        "numeric",
        count,
        missing,
        edges=tuple(float(e) for e in edges),
        counts=tuple(int(c) for c in interval_counts),
        mean=float(values.mean()),
        std=float(values.std()),
    )


def profile_frame(frame: Any) -> tuple[ColumnProfile, ...]:
    if frame is None:
        return ()
    return tuple(profile_column(str(name), frame[name]) for name in frame.columns)


def score_values(predictions: Any) -> Any:
    """The model's scores as one column: a number (or label) per row; the last column of 2-D output."""
    import numpy as np
    import pandas as pd

    array = np.asarray(predictions, dtype=object if not _numeric(predictions) else float)
    if array.ndim == 2:
        array = array[:, -1]
    return pd.Series(array.tolist() if array.dtype == object else array, name="score")


def _numeric(values: Any) -> bool:
    try:
        import numpy as np

        np.asarray(values, dtype=float)
        return True
    except (TypeError, ValueError):
        return False


def build_baseline(
    inputs: Any, features: Any, scores: Any, inputs_expression: str | None, features_expression: str | None
) -> Baseline:
    score = profile_column("score", score_values(scores)) if scores is not None else None
    return Baseline(
        profile_frame(to_frame(inputs) if inputs is not None else None),
        profile_frame(to_frame(features) if features is not None else None),
        score,
        inputs_expression,
        features_expression,
    )


def write_baseline(baseline: Baseline, out_dir: Path) -> Path:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    path = Path(out_dir) / BASELINE_FILE
    path.write_text(json.dumps(clean(baseline.to_dict()), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


MAX_BASELINE_ROWS = 200_000  # held-out rows profiled and scored at most (the first ones)


def collect_baseline(
    scope: dict[str, Any],
    out_dir: Path,
    *,
    model: Any,
    fitted: Any,
    inputs_expression: str | None,
    features_expression: str | None,
    package: str | None,
) -> list[str]:
    """Write `baseline.json` for a finished job; returns what could not be profiled (as notes)."""
    import importlib

    problems: list[str] = []
    inputs = None
    expression = full_expression(inputs_expression) if inputs_expression else None
    if expression:
        try:
            inputs = eval(expression, scope)  # noqa: S307 - the job's own expression
        except Exception as exc:
            problems.append(f"baseline: evaluating {expression!r} raised {type(exc).__name__}: {exc}")
    inputs = _first_rows(inputs)
    scores = None
    if inputs is not None and model is not None:
        try:
            predict = importlib.import_module(f"{package}.predict").predict if package else None
        except Exception:
            predict = None
        try:
            scores = predict(model, inputs) if predict is not None else model.predict(inputs)
        except Exception as exc:
            problems.append(f"baseline: predict on {expression!r} raised {type(exc).__name__}: {exc}")
    try:
        baseline = build_baseline(inputs, _first_rows(fitted), scores, expression, features_expression)
        write_baseline(baseline, out_dir)
    except Exception as exc:  # the baseline is evidence, not a reason to lose the run
        problems.append(f"baseline: {type(exc).__name__}: {exc}")
    return problems


def _first_rows(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "iloc"):
        return value.iloc[:MAX_BASELINE_ROWS]
    try:
        return value[:MAX_BASELINE_ROWS]
    except Exception:
        return value
