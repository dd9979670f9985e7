"""Bad rows: every input row is checked against the run's input contract before it is scored.

The rules are the shared ones (`nb2prod.runs.contract.validate_records`, also used by serving and
drift). A vectorised pre-check finds the rows that could break an error rule (a null, a
non-finite number, a whole number with a fraction, a column that is not numeric where a number
belongs, a field that is not a number); only those rows go through `validate_records`, so clean
chunks cost a few column scans. Range and category warnings are counted, not refused.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based data row of the input
    id: Any  # the --id-column value, else the row number
    field: str
    rule: str
    message: str  # of the first error; `violations` holds them all
    violations: tuple[dict[str, Any], ...]
    record: dict[str, Any]

    def describe(self, source: str) -> str:
        return f"{source}, row {self.row}: {self.message} (rule {self.rule!r})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "id": self.id,
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
            "violations": list(self.violations),
            "record": self.record,
        }


def numbers_from_text(frame: Any, contract: Any) -> Any:
    """CSV text in numeric fields as numbers where it reads as one; other text stays, for the checks."""
    import pandas as pd

    for field in contract.fields:
        if field.kind not in ("int", "float") or field.name not in frame.columns:
            continue
        column = frame[field.name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        text = column.astype(object).where(column.notna(), None)
        numbers = pd.to_numeric(text, errors="coerce")
        unreadable = numbers.isna() & text.notna()
        if unreadable.any():
            numbers = numbers.astype(object).where(~unreadable, text)
        frame[field.name] = numbers
    return frame


def _suspects(frame: Any, contract: Any) -> Any:
    """Boolean mask of the rows that could break an error rule."""
    import numpy as np
    import pandas as pd

    mask = np.zeros(len(frame), dtype=bool)
    for field in contract.fields:
        if field.name not in frame.columns:
            return np.ones(len(frame), dtype=bool)
        column = frame[field.name]
        numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
        if field.kind in ("int", "float") and numeric:
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            finite = np.isfinite(values)
            mask |= ~finite
            if field.kind == "int" and pd.api.types.is_float_dtype(column):
                mask |= finite & (values != np.floor(values))
        elif field.kind == "bool" and pd.api.types.is_bool_dtype(column) and column.dtype != object:
            mask |= column.isna().to_numpy()
        elif field.kind == "any":
            continue
        else:
            return np.ones(len(frame), dtype=bool)
    return mask


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item") and type(value).__module__.startswith("numpy"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__module__.startswith("pandas"):
        import pandas as pd

        if pd.isna(value):
            return None
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    return value


def check_frame(
    frame: Any, contract: Any, first_row: int, ids: list[Any] | None
) -> tuple[list[int], list[BadRow], Counter[tuple[str, str]]]:
    """Positions of the bad rows in `frame`, what is wrong with each, and warning counts by (field, rule)."""
    import numpy as np

    from nb2prod.runs.contract import validate_records

    names = [f.name for f in contract.fields if f.name in frame.columns]
    suspects = np.flatnonzero(_suspects(frame, contract))
    warnings: Counter[tuple[str, str]] = Counter()
    bad_positions: list[int] = []
    bad_rows: list[BadRow] = []
    if len(suspects):
        subset = frame.iloc[suspects][names]
        records = [{k: _plain(v) for k, v in zip(names, row)} for row in subset.itertuples(index=False, name=None)]
        by_row: dict[int, list[Any]] = {}
        for violation in validate_records(records, contract):
            by_row.setdefault(violation.row, []).append(violation)
        for local, violations in sorted(by_row.items()):
            errors = [v for v in violations if v.severity == "error"]
            if not errors:
                warnings.update((v.field, v.rule) for v in violations)
                continue
            position = int(suspects[local])
            row = first_row + position
            bad_positions.append(position)
            bad_rows.append(
                BadRow(
                    row=row,
                    id=_plain(ids[position]) if ids is not None else row,
                    field=errors[0].field,
                    rule=errors[0].rule,
                    message=errors[0].message,
                    violations=tuple(v.to_dict() for v in violations),
                    record=records[local],
                )
            )
    clean = np.ones(len(frame), dtype=bool)
    clean[suspects] = False
    _count_seen(frame, contract, clean, warnings)
    return bad_positions, bad_rows, warnings


def _count_seen(frame: Any, contract: Any, clean: Any, warnings: Counter[tuple[str, str]]) -> None:
    """Warnings of the rows the pre-check passed: numbers outside the training range, unseen categories."""
    import numpy as np

    for field in contract.fields:
        if field.name not in frame.columns:
            continue
        column = frame[field.name][clean]
        if field.categories is not None:
            count = int((~column.isin(list(field.categories)) & column.notna()).sum())
            if count:
                warnings[(field.name, "category")] += count
        elif field.kind in ("int", "float") and (field.min is not None or field.max is not None):
            values = column.to_numpy(dtype="float64", na_value=np.nan)
            outside = np.zeros(len(values), dtype=bool)
            if field.min is not None:
                outside |= values < field.min
            if field.max is not None:
                outside |= values > field.max
            if outside.any():
                warnings[(field.name, "range")] += int(outside.sum())
