"""Records (JSON objects from a request) shaped as the notebook's predict received its inputs.

Standard library only at import: pandas and numpy are imported when a contract asks for them.
"""

from __future__ import annotations

import math
from typing import Any


def shape_records(records: list[dict[str, Any]], contract: Any) -> Any:
    """A DataFrame in the contract's field order and dtypes (kind dataframe or series), a
    2-D array (ndarray), lists (sequence), or the records themselves."""
    kind = getattr(contract, "kind", "") if contract is not None else "dataframe"
    names: list[Any] = list(contract.names) if contract is not None else []
    if kind in ("dataframe", "series", ""):
        import pandas as pd

        frame = pd.DataFrame.from_records(
            records, columns=names if contract is not None else None
        )
        if contract is not None:
            for spec in contract.fields:
                if (
                    spec.kind in ("int", "float", "bool")
                    and str(frame.dtypes[spec.name]) != spec.dtype
                ):
                    if frame[spec.name].isna().any():
                        continue  # a null where allowed: pandas keeps it as NaN
                    frame[spec.name] = frame[spec.name].astype(spec.dtype)
        return frame
    if kind == "ndarray":
        import numpy as np

        dtype = contract.fields[0].dtype if contract.fields else None
        rows = [[_nan(r.get(n)) for n in names] for r in records]
        return np.asarray(rows, dtype=dtype)
    if kind == "sequence":
        if names == ["x0"]:
            return [r.get("x0") for r in records]
        return [[r.get(n) for n in names] for r in records]
    return records


def _nan(value: Any) -> Any:
    return math.nan if value is None else value


def jsonable(value: Any) -> Any:
    """numpy scalars and arrays as plain JSON values; NaN as null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return jsonable(value.tolist())
    if hasattr(value, "item"):
        return jsonable(value.item())
    return str(value)


def outputs_list(result: Any) -> list[Any]:
    """predict's result (list, array, Series, DataFrame) as one JSON value per row."""
    if hasattr(result, "to_dict") and hasattr(result, "columns"):
        return [jsonable(r) for r in result.to_dict(orient="records")]
    if hasattr(result, "tolist"):
        result = result.tolist()
    return [jsonable(v) for v in result]
