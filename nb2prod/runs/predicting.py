"""`nb2prod predict RUN INPUT`: load a run's model (sha256 checked) and predict on CSV / JSON lines."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.runs.artifacts import load_model
from nb2prod.runs.contract import rows_for_model, to_jsonable
from nb2prod.runs.engines import package_on_path
from nb2prod.runs.errors import IntegrityError
from nb2prod.runs.record import Contract
from nb2prod.runs.store import RunStore, StoredRun


def _csv_has_header(handle: Any, sep: str) -> bool:
    """A first CSV line whose fields are all numbers is a data row, not a header."""
    import csv

    position = handle.tell() if handle.seekable() else None
    first = handle.readline()
    if position is not None:
        handle.seek(position)
    fields = next(csv.reader([first], delimiter=sep), [])
    if not fields:
        return True
    for field in fields:
        try:
            float(field)
        except ValueError:
            return True
    return False


def read_rows(path: Path, fmt: str = "auto") -> list[dict[str, Any] | list[Any]]:
    """Rows of a CSV file (numbers parsed as numbers) or of JSON lines.

    A row is an object of column values (a JSON object, a CSV line under a header) or positional
    values (a JSON array, a line of a CSV file without a header: its first line holds only numbers).
    """
    name = str(path)
    if fmt == "auto":
        fmt = "csv" if name.lower().endswith((".csv", ".tsv")) else "jsonl"
    try:
        handle = sys.stdin if name == "-" else open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the input ({exc.strerror}).") from None
    with handle:
        if fmt == "csv":
            import pandas as pd

            sep = "\t" if name.lower().endswith(".tsv") else ","
            if name == "-":
                import io

                handle = io.StringIO(handle.read())
            try:
                header = _csv_has_header(handle, sep)
                frame = pd.read_csv(handle, sep=sep, header=0 if header else None)
            except pd.errors.EmptyDataError:
                return []
            except (pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise InputError(f"{path}: not valid CSV ({str(exc).splitlines()[0]}).") from None
            if not header:
                return [to_jsonable(row) for row in frame.values.tolist()]
            return [to_jsonable(row) for row in frame.to_dict(orient="records")]
        rows = []
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}, line {number}: not valid JSON ({exc.msg}).") from None
            if not isinstance(row, (dict, list)):
                raise InputError(
                    f"{path}, line {number}: expected a JSON object of column values or a JSON array of"
                    f" the values in column order, got {type(row).__name__}."
                )
            rows.append(row)
        return rows


def has_predict_cell(run: StoredRun) -> bool:
    """Whether the run's package defines its own predict (else it calls the model's predict)."""
    manifest = run.path / "code" / "nb2prod.json"
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    cells = data.get("cells") or data.get("cell_map") or []
    if isinstance(cells, dict):
        cells = list(cells.values())
    for cell in cells:
        if isinstance(cell, dict):
            roles = cell.get("roles") or [cell.get("role")]
            if "predict" in roles:
                return True
    return False


def _shape_for_custom_predict(rows: list[dict[str, Any]], inputs: Contract | None) -> Any:
    """A DataFrame of the rows; columns the notebook fed predict get the dtypes they had there.

    The notebook's example inputs are an example, not a schema (they may carry the label too), so
    missing columns are left for the notebook's predict to report.
    """
    import pandas as pd

    frame = pd.DataFrame.from_records(rows)
    if inputs is not None and inputs.kind == "dataframe":
        for feature in inputs.features:
            if feature.name not in frame.columns:
                continue
            try:
                frame[feature.name] = frame[feature.name].astype(feature.dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"column {feature.name!r} cannot be read as {feature.dtype} ({exc})") from None
    return frame


@dataclass(frozen=True)
class LoadedRun:
    """A run's verified model and its package's predict function, ready for rows of input."""

    run: StoredRun
    model: Any
    predict_function: Callable[[Any, Any], Any]
    custom_predict: bool  # the notebook has a predict cell (else the model's own predict is called)
    explain_function: Callable[[Any, Any], Any] | None = None  # the package's explain (None: built before it had one)

    def shape(self, rows: Sequence[dict[str, Any] | list[Any]]) -> Any:
        """Rows as the predict function takes them; ValueError names a missing or mistyped column."""
        manifest = self.run.manifest
        named = positional_rows(rows, manifest.predict_inputs if self.custom_predict else manifest.contract)
        if self.custom_predict or manifest.contract is None:
            return _shape_for_custom_predict(named, manifest.predict_inputs if self.custom_predict else None)
        return rows_for_model(named, manifest.contract)

    def predict_rows(self, rows: Sequence[dict[str, Any] | list[Any]], source: str = "INPUT") -> list[Any]:
        """One JSON-ready prediction per row; bad rows raise InputError naming `source`."""
        if not rows:
            return []
        try:
            inputs = self.shape(rows)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}.") from None
        try:
            result = self.predict_function(self.model, inputs)
        except Exception as exc:  # the notebook's predict rejected the rows: say so in one line
            hint = ""
            examples = self.run.manifest.predict_inputs
            if examples is not None and examples.features:
                hint = f"; in the notebook, predict was fed columns {', '.join(f.name for f in examples.features)}"
            raise InputError(
                f"{source}: predict of run {self.run.run_id} failed on these rows ({type(exc).__name__}: {exc}){hint}."
            ) from exc
        values = [to_jsonable(v) for v in result] if isinstance(result, list) else list(to_jsonable(result))
        if len(values) != len(rows):
            raise InputError(
                f"predict of run {self.run.run_id} returned {len(values)} values for {len(rows)} input rows."
            )
        return values

    def explain_rows(self, rows: Sequence[dict[str, Any] | list[Any]], source: str = "INPUT") -> list[Any]:
        """One JSON-ready explanation per row, from the package's `explain` (the notebook's explain
        cell, else SHAP's contributions for a tree ensemble or linear model), fed what predict is fed.

        Raises ExplainUnavailable (the sentence says how to enable explanations) when nothing can
        explain the model, InputError naming `source` for rows that cannot be explained."""
        if self.explain_function is None:
            from nb2prod.runtime import ExplainUnavailable

            raise ExplainUnavailable(
                f"run {self.run.run_id} was built before nb2prod generated an explain module: rebuild the notebook"
                " and train a new run to explain its predictions"
            )
        if not rows:
            return []
        try:
            inputs = self.shape(rows)
        except ValueError as exc:
            raise InputError(f"{source}: {exc}.") from None
        try:
            result = self.explain_function(self.model, inputs)
        except Exception as exc:
            if type(exc).__name__ == "ExplainUnavailable":
                raise
            raise InputError(
                f"{source}: explain of run {self.run.run_id} failed on these rows ({type(exc).__name__}: {exc})."
            ) from exc
        values = [to_jsonable(v) for v in result] if isinstance(result, (list, tuple)) else list(to_jsonable(result))
        if len(values) != len(rows):
            raise InputError(
                f"explain of run {self.run.run_id} returned {len(values)} explanations for {len(rows)} input rows."
            )
        return values


POSITIONAL_KINDS = ("ndarray", "sequence")


def positional_rows(rows: Sequence[dict[str, Any] | list[Any]], contract: Contract | None) -> list[dict[str, Any]]:
    """Rows as objects of column values; positional rows (a JSON array, a CSV line) are named by
    the contract's features in order. For a model fitted on a bare array (features x0, x1, ...)
    an object with as many values as features, whatever its keys (a CSV header), is positional too.

    Raises ValueError saying what is expected when a row has the wrong number of values.
    """
    names = [f.name for f in contract.features] if contract is not None else []
    positional = contract is not None and contract.kind in POSITIONAL_KINDS
    expected = (
        f"the model was fitted on {len(names)} values a row ({', '.join(names)}): give each row as a JSON array"
        f" of {len(names)} numbers, a JSON object with keys {', '.join(names)}, or a CSV line of {len(names)}"
        " columns (with or without a header)"
    )
    out: list[dict[str, Any]] = []
    for number, row in enumerate(rows, 1):
        if isinstance(row, list):
            if not names:
                raise ValueError(
                    f"row {number} is a JSON array, but the model's input columns are not known: give each row"
                    " as a JSON object of column values"
                )
            if len(row) != len(names):
                raise ValueError(f"row {number} has {len(row)} values; {expected}")
            out.append(dict(zip(names, row)))
        elif positional and names and not set(names) <= set(row):
            if len(row) != len(names):
                raise ValueError(f"row {number} has {len(row)} values; {expected}")
            out.append(dict(zip(names, row.values())))
        else:
            out.append(row)
    return out


def load_run(store: RunStore | Path | str, ref: str, *, trust_pickle: bool = False) -> LoadedRun:
    """Resolve `ref` (run id, prefix or alias), verify the whole run, load its model and predict code.

    The run folder must match its run.json in full (`RunStore.verify`: nothing missing, changed,
    added or linked; signed with the store's key when one is configured), else IntegrityError names
    the first offending path. A joblib (pickle) model is loaded only from a run signed with the
    configured key, or with `trust_pickle`. The run's own code snapshot (`code/src`) is imported,
    without reading or writing bytecode caches, so a model always meets the package code it was
    trained with, whatever build is current.
    """
    run_store = store if isinstance(store, RunStore) else RunStore(store)
    run = run_store.get(ref)
    manifest = run.manifest
    if manifest.source is None or not getattr(manifest.source, "package", None):
        raise IntegrityError(f"run {run.run_id} records no source package in its run.json, so it cannot predict.")
    if manifest.model is None:
        raise InputError(f"run {run.run_id} has no model to predict with (its status is {manifest.status}).")
    run_store.verify(run)
    signed = run_store.signing_key is not None  # verify() checked the signature against that key
    package = manifest.source.package
    with package_on_path(run.path / "code" / "src", package), _fresh_bytecode():
        model = load_model(run.path, manifest.model, trust_pickle=trust_pickle or signed)
        module = importlib.import_module(f"{package}.predict")
        explain = None
        if (run.path / "code" / "src" / package / "explain.py").is_file():
            explain = importlib.import_module(f"{package}.explain").explain
    return LoadedRun(run, model, module.predict, has_predict_cell(run), explain)


@contextlib.contextmanager
def _fresh_bytecode() -> Iterator[None]:
    """Import a run's code from its sources only: bytecode goes to (and comes from) a private temporary
    folder, so nothing is written into the read-only run and no `__pycache__` there is ever used."""
    before = sys.dont_write_bytecode, sys.pycache_prefix
    with tempfile.TemporaryDirectory(prefix="nb2prod-pycache-") as private:
        sys.dont_write_bytecode, sys.pycache_prefix = True, private
        try:
            yield
        finally:
            sys.dont_write_bytecode, sys.pycache_prefix = before


def explain_rows(
    store: RunStore,
    ref: str,
    rows: Sequence[dict[str, Any] | list[Any]],
    source: str = "INPUT",
    *,
    trust_pickle: bool = False,
) -> tuple[LoadedRun, list[Any]]:
    """The run `ref` names, and one JSON-ready explanation per row from its package's `explain`."""
    loaded = load_run(store, ref, trust_pickle=trust_pickle)
    return loaded, loaded.explain_rows(rows, source)


def predict_rows(
    store: RunStore,
    ref: str,
    rows: Sequence[dict[str, Any] | list[Any]],
    source: str = "INPUT",
    *,
    trust_pickle: bool = False,
) -> list[Any]:
    """One JSON-ready prediction per row, from the model of the run `ref` names."""
    return load_run(store, ref, trust_pickle=trust_pickle).predict_rows(rows, source)
