"""Notebook builders and paths shared by the tests: notebooks are built in code, small and explicit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def cell(source: str, *tags: str, cell_id: str | None = None, cell_type: str = "code") -> dict[str, Any]:
    data: dict[str, Any] = {"cell_type": cell_type, "metadata": {"tags": list(tags)} if tags else {}, "source": source}
    if cell_id:
        data["id"] = cell_id
    if cell_type == "code":
        data.update(execution_count=None, outputs=[])
    return data


def write_notebook(path: Path, cells: list[dict[str, Any]], metadata: dict[str, Any] | None = None) -> Path:
    """Write an nbformat 4.5 notebook; cells without an id get `c<index>`."""
    for index, item in enumerate(cells):
        item.setdefault("id", f"c{index}")
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    meta.update(metadata or {})
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}, indent=1))
    return path


SMALL_CELLS = [
    ("n = 3  # how many items\nscale: float = 2  # multiplier", ("parameters",)),
    ("import math\n\n\ndef grow(x):\n    return math.sqrt(x) * 2", ("export",)),
    ("values = [grow(i) * scale for i in range(n)]\nmodel = max(values)", ("train",)),
    ('metrics = {"top": model}\nassert metrics["top"] > 0, "model must be positive"', ("metrics",)),
    ("def predict(model, inputs):\n    return [model * x for x in inputs]", ("predict",)),
    ("assert grow(4) == 4.0", ("test",)),
    ("predict(model, [1, 2])", ()),
]
