"""Run-time helpers that every generated package carries as `_runtime.py`.

This file is copied verbatim into generated packages, so it depends on the standard library only
(joblib and pandas are imported when used) and on nothing else from nb2prod.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import math
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MODEL_FILE = "model.joblib"
TYPES = ("int", "float", "str", "bool", "list", "dict", "any")


class QualityGateError(AssertionError):
    """A metrics gate of the notebook failed; the run must not be promoted."""


class ParameterError(ValueError):
    """A parameter value that does not fit the parameter schema."""


class ModelIntegrityError(RuntimeError):
    """A model file whose sha256 is not the one recorded when it was saved."""


CONTRACT_RULES = (
    "missing",
    "unknown",
    "type",
    "not-a-number",
    "null",
    "range",
    "category",
)
KINDS = ("int", "float", "bool", "str", "datetime", "any")


@dataclass(frozen=True)
class Violation:
    """One way a record breaks the input contract: `row` is 0-based, `rule` one of
    CONTRACT_RULES; "range" and "category" are warnings unless ranges are strict."""

    row: int
    field: str
    rule: str
    message: str
    severity: str  # "error" | "warning"

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class FieldContract:
    """What training saw of one input field."""

    name: str
    dtype: str
    kind: str  # one of KINDS
    nullable: bool
    min: float | None = None
    max: float | None = None
    categories: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class InputContract:
    """The fields predict receives, in order, with example records."""

    fields: tuple[FieldContract, ...]
    examples: tuple[dict[str, Any], ...] = ()
    kind: str = "dataframe"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "fields": [
                {
                    "name": f.name,
                    "dtype": f.dtype,
                    "kind": f.kind,
                    "nullable": f.nullable,
                    "min": f.min,
                    "max": f.max,
                    "categories": list(f.categories) if f.categories else None,
                }
                for f in self.fields
            ],
            "examples": [dict(e) for e in self.examples],
        }


def kind_of_dtype(dtype: str) -> str:
    """The JSON kind of a pandas/numpy dtype or Python type name."""
    text = str(dtype).lower()
    if text.startswith(("int", "uint")) or text in ("long",):
        return "int"
    if text.startswith(("float", "double", "decimal")):
        return "float"
    if text.startswith("bool"):
        return "bool"
    if text.startswith(("datetime", "timestamp", "date")):
        return "datetime"
    if text in ("str", "string", "unicode"):
        return "str"
    return "any"


def _get(item: Any, name: str, default: Any = None) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def as_input_contract(contract: Any) -> InputContract:
    """An InputContract from one, from a recorded contract (run.json's `predict_inputs` or
    `contract`, as a dict or a record with `features`), or from a to_dict() of one."""
    if isinstance(contract, InputContract):
        return contract
    items = _get(contract, "fields")
    if items is None:
        items = _get(contract, "features") or ()
    fields = []
    for item in items:
        dtype = str(_get(item, "dtype", "any"))
        kind = _get(item, "kind") or kind_of_dtype(dtype)
        nullable = _get(item, "nullable")
        categories = _get(item, "categories")
        fields.append(
            FieldContract(
                name=str(_get(item, "name")),
                dtype=dtype,
                kind=kind if kind in KINDS else "any",
                nullable=True if nullable is None else bool(nullable),
                min=_get(item, "min"),
                max=_get(item, "max"),
                categories=tuple(categories) if categories else None,
            )
        )
    examples = tuple(dict(e) for e in (_get(contract, "examples") or ()))
    return InputContract(tuple(fields), examples, str(_get(contract, "kind") or ""))


def run_input_contract(record: Mapping[str, Any]) -> InputContract | None:
    """The contract a run's predict is held to, from its run.json: what the notebook fed
    predict when recorded, else what the model was fitted on."""
    for key in ("predict_inputs", "contract"):
        value = record.get(key)
        if isinstance(value, Mapping) and value.get("features"):
            return as_input_contract(value)
    return None


def _number_text(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _check_value(spec: FieldContract, value: Any) -> tuple[str, str] | None:
    """(rule, message) when `value` breaks the field's type or null rule."""
    name = spec.name
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if spec.nullable:
            return None
        return "null", f"{name!r} may not be null: training saw no missing values"
    kind = spec.kind
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                if _number_text(value):
                    return (
                        "type",
                        f"{name!r} must be a JSON number, not the text {value!r}",
                    )
                return "not-a-number", f"{name!r} must be a number, not {value!r}"
            return "type", f"{name!r} must be a number, not {_json_type(value)}"
        if isinstance(value, float) and math.isinf(value):
            return "not-a-number", f"{name!r} must be a finite number, not {value!r}"
        if kind == "int" and isinstance(value, float) and not value.is_integer():
            return "type", f"{name!r} must be a whole number, not {value!r}"
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return None
        return "type", f"{name!r} must be true or false, not {_json_type(value)}"
    if kind == "str":
        if isinstance(value, str):
            return None
        return "type", f"{name!r} must be a string, not {_json_type(value)}"
    if kind == "datetime":
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return "type", f"{name!r} must be an ISO date or time, not {value!r}"
            return None
        return (
            "type",
            f"{name!r} must be an ISO date or time string, not {_json_type(value)}",
        )
    if isinstance(value, (dict, list)):
        return "type", f"{name!r} must be a single value, not {_json_type(value)}"
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_seen(spec: FieldContract, value: Any) -> tuple[str, str] | None:
    """(rule, message) when `value` lies outside what training saw."""
    if value is None or isinstance(value, bool):
        return None
    if spec.categories is not None:
        if value not in spec.categories:
            seen = ", ".join(repr(c) for c in spec.categories[:10])
            return (
                "category",
                f"{spec.name!r} = {value!r} was not seen in training ({seen})",
            )
        return None
    if spec.kind in ("int", "float") and isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        low, high = spec.min, spec.max
        if (low is not None and value < low) or (high is not None and value > high):
            return (
                "range",
                f"{spec.name!r} = {value!r} is outside the training range [{low}, {high}]",
            )
    return None


def validate_records(
    records: Iterable[Any], contract: Any, *, strict_ranges: bool = False
) -> list[Violation]:
    """Every way `records` (mappings of field name to value) break `contract`.

    Errors: a field missing, a field the contract does not know, a wrong type, text where
    a number belongs, a null where training saw none. Warnings (errors when
    `strict_ranges`): a number outside the training range, a category never seen."""
    spec = as_input_contract(contract)
    by_name = {f.name: f for f in spec.fields}
    seen_severity = "error" if strict_ranges else "warning"
    violations: list[Violation] = []
    for row, record in enumerate(records):
        if not isinstance(record, Mapping):
            violations.append(
                Violation(
                    row,
                    "",
                    "type",
                    f"record {row} must be an object of field values, not {_json_type(record)}",
                    "error",
                )
            )
            continue
        for name in record:
            if name not in by_name:
                known = ", ".join(by_name) or "none"
                violations.append(
                    Violation(
                        row,
                        str(name),
                        "unknown",
                        f"{name!r} is not an input of this model (its inputs: {known})",
                        "error",
                    )
                )
        for name, field_spec in by_name.items():
            if name not in record:
                violations.append(
                    Violation(
                        row,
                        name,
                        "missing",
                        f"{name!r} is required but missing",
                        "error",
                    )
                )
                continue
            value = record[name]
            problem = _check_value(field_spec, value)
            if problem is not None:
                violations.append(Violation(row, name, problem[0], problem[1], "error"))
                continue
            problem = _check_seen(field_spec, value)
            if problem is not None:
                violations.append(
                    Violation(row, name, problem[0], problem[1], seen_severity)
                )
    return violations


def coerce(name: str, spec: Mapping[str, Any], value: Any) -> Any:
    """Convert `value` (a Python value, or text from a command line) to the parameter's type.

    The rules are those of `nb2prod train -p` (nb2prod/runs/params.py): text is converted with
    the declared type, never guessed; `null` is None for a nullable parameter; a list may be
    written as JSON or as comma-separated items, typed like the items of its default."""
    kind = spec.get("type", "any")
    if isinstance(value, str) and kind != "str":
        value = _parse_text(name, spec, value)
    if value is None:
        if spec.get("nullable") or kind == "any":
            return None
        raise ParameterError(f"parameter {name!r} cannot be None")
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        kind == "float"
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return float(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "list" and isinstance(value, (list, tuple)):
        element = _element_type(spec)
        if element is None:
            return list(value)
        return [coerce(name, {"type": element}, item) for item in value]
    if kind == "dict" and isinstance(value, dict):
        return value
    if kind == "any":
        return value
    raise ParameterError(
        f"parameter {name!r} must be a {kind}, not {type(value).__name__} {value!r}"
    )


def _element_type(spec: Mapping[str, Any]) -> str | None:
    """For a list whose default holds values of one scalar type, that type."""
    default = spec.get("default")
    if not isinstance(default, list) or not default:
        return None
    kinds = set()
    for item in default:
        if isinstance(item, bool):
            kinds.add("bool")
        elif isinstance(item, int):
            kinds.add("int")
        elif isinstance(item, float):
            kinds.add("float")
        elif isinstance(item, str):
            kinds.add("str")
        else:
            return None
    if kinds == {"int", "float"}:
        return "float"
    return kinds.pop() if len(kinds) == 1 else None


def _parse_text(name: str, spec: Mapping[str, Any], text: str) -> Any:
    kind = spec.get("type", "any")
    stripped = text.strip()
    if (spec.get("nullable") or kind == "any") and stripped.lower() in (
        "null",
        "none",
        "~",
    ):
        return None
    if kind == "bool":
        lowered = stripped.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ParameterError(f"parameter {name!r} must be true or false, not {text!r}")
    if kind == "int":
        try:
            return int(stripped)
        except ValueError:
            raise ParameterError(
                f"parameter {name!r} must be a whole number, not {text!r}"
            ) from None
    if kind == "float":
        try:
            return float(stripped)
        except ValueError:
            raise ParameterError(
                f"parameter {name!r} must be a number, not {text!r}"
            ) from None
    if kind == "list" and not stripped.startswith(("[", "{")):
        items = [item.strip() for item in stripped.split(",")] if stripped else []
        element = _element_type(spec)
        if element in ("int", "float", "bool"):
            return [_parse_text(name, {"type": element}, item) for item in items]
        return items
    try:
        return json.loads(stripped)
    except ValueError:
        if kind == "any":
            return text
        raise ParameterError(
            f"parameter {name!r} must be a {kind} written as JSON, not {text!r}"
        ) from None


def coerce_all(
    schema: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]
) -> dict[str, Any]:
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ParameterError(
            f"unknown parameter {unknown[0]!r}; the parameters are: {', '.join(schema) or 'none'}"
        )
    return {name: coerce(name, schema[name], value) for name, value in values.items()}


def parse_overrides(
    argv: Sequence[str], schema: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Parameters from `--NAME VALUE`, `-p NAME VALUE` (as `nb2prod train`) and `-f FILE` (JSON, or
    YAML when PyYAML is installed), typed with the schema; a later value wins. `--output DIR` is an
    option, not a parameter."""
    values: dict[str, Any] = {}
    options: dict[str, str] = {}
    args = list(argv)
    while args:
        flag = args.pop(0)
        if flag in ("-p", "--param", "--parameter"):
            if len(args) < 2:
                raise ParameterError(f"{flag} needs a NAME and a VALUE")
            key, value = args.pop(0), args.pop(0)
        elif flag in ("-f", "--file"):
            if not args:
                raise ParameterError(f"{flag} needs a file of parameters")
            values.update(coerce_all(schema, _read_parameter_file(args.pop(0))))
            continue
        elif flag.startswith("--"):
            key = flag[2:]
            if "=" in key:
                key, value = key.split("=", 1)
            elif args:
                value = args.pop(0)
            else:
                raise ParameterError(f"{flag} needs a value")
            if key == "output":
                options[key] = value
                continue
        else:
            raise ParameterError(
                f"expected --NAME VALUE or -p NAME VALUE, got {flag!r}"
            )
        name = key.replace("-", "_")
        if name not in schema:
            raise ParameterError(
                f"unknown parameter {name!r}; the parameters are: {', '.join(schema) or 'none'}"
            )
        values[name] = coerce(name, schema[name], value)
    return values, options


def _read_parameter_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterError(
            f"cannot read the parameters file {path}: {exc.strerror}"
        ) from None
    try:
        data = json.loads(text)
    except ValueError:
        try:
            import yaml
        except ImportError:
            raise ParameterError(
                f"{path} is not JSON (install PyYAML to read YAML)"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ParameterError(f"{path} is neither JSON nor YAML") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path} must hold a mapping of parameter names to values")
    return data


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: Any, directory: str | os.PathLike[str]) -> tuple[Path, str]:
    """Save with joblib; return the file and its sha256 (also written beside it)."""
    import joblib

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    joblib.dump(model, path)
    digest = sha256_file(path)
    (folder / (MODEL_FILE + ".sha256")).write_text(digest + "\n", encoding="utf-8")
    return path, digest


def load_model(path: str | os.PathLike[str], sha256: str | None = None) -> Any:
    """Load a model only if its sha256 matches. `path` is a model file (with `sha256`, or the
    `.sha256` file beside it), a folder holding model.joblib, a run folder of an nb2prod run
    store, or STORE/RUN where RUN is a run id, a unique prefix of one, or an alias."""
    path = Path(path)
    run = find_run(path)
    if run is not None:
        return _load_run_model(run)
    import joblib

    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ModelIntegrityError(
            f"{path}: no model file, run folder, or run id or alias of a run store there"
        )
    if sha256 is None:
        recorded = path.with_name(path.name + ".sha256")
        if not recorded.is_file():
            raise ModelIntegrityError(
                f"{path}: no sha256 given and no {recorded.name} beside it, so the model is not loaded"
            )
        sha256 = recorded.read_text(encoding="utf-8").strip()
    _verify(path, sha256)
    return joblib.load(path)


def find_run(path: Path) -> Path | None:
    """The run folder `path` names: a folder with run.json, or STORE/RUN_ID, STORE/PREFIX, STORE/ALIAS."""
    if (path / "run.json").is_file():
        return path
    store, ref = path.parent, path.name
    alias = store / "aliases" / f"{ref}.json"
    if alias.is_file():
        run_id = json.loads(alias.read_text(encoding="utf-8"))["run_id"]
        return store / run_id
    if store.is_dir() and ref:
        matches = sorted(
            p
            for p in store.iterdir()
            if p.name.startswith(ref) and (p / "run.json").is_file()
        )
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ModelIntegrityError(
                f"{path}: {ref!r} names {len(matches)} runs; give more of the run id"
            )
    return None


def _verify(path: Path, sha256: str) -> None:
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelIntegrityError(
            f"{path}: sha256 is {actual[:12]}…, expected {sha256[:12]}…; the file changed since it was saved, so it is not loaded"
        )


def _load_run_model(run: Path) -> Any:
    record = (
        json.loads((run / "run.json").read_text(encoding="utf-8")).get("model") or {}
    )
    if not record.get("file"):
        raise ModelIntegrityError(f"{run}: this run recorded no model")
    path = run / record["file"]
    _verify(path, record["sha256"])
    if record.get("format") == "skops":
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(file=path))
        unexpected = sorted(untrusted - set(record.get("trusted_types") or ()))
        if unexpected:
            raise ModelIntegrityError(
                f"{path}: holds types the run did not record ({', '.join(unexpected)}), so it is not loaded"
            )
        return skops.io.load(path, trusted=sorted(untrusted))
    import joblib

    return joblib.load(path)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (ValueError, TypeError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def save_outputs(
    directory: str | os.PathLike[str],
    namespace: Mapping[str, Any],
    model_variable: str,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the model, its sha256, the metrics and the parameters of a finished job."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    _, digest = save_model(namespace[model_variable], folder)
    metrics = to_jsonable(namespace.get("metrics") or {})
    (folder / "metrics.json").write_text(
        json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    (folder / "params.json").write_text(
        json.dumps(to_jsonable(dict(params)), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    return {"model": MODEL_FILE, "sha256": digest, "metrics": metrics}


def read_inputs(path: str) -> Any:
    """CSV or JSON lines → a pandas DataFrame when pandas is installed, else a list of records."""
    handle = sys.stdin if path == "-" else open(path, encoding="utf-8", newline="")
    with handle:
        text = handle.read()
    stripped = text.lstrip()
    if path.endswith((".jsonl", ".json", ".ndjson")) or stripped.startswith(("{", "[")):
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
        records = [{k: _number(v) for k, v in row.items()} for row in rows]
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records)


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def locate(
    source_map: Mapping[str, Sequence[Sequence[Any]]], filename: str, line: int
) -> str | None:
    """Name the notebook cell that generated `line` of `filename` (a generated module)."""
    entries = source_map.get(Path(filename).name)
    if not entries:
        return None
    for start, end, cell, cell_id, role, lines in entries:
        if start <= line <= end:
            cell_line = None
            for out_line, src_line in lines:
                if out_line <= line:
                    cell_line = src_line
            where = f"notebook cell {cell + 1} (id {cell_id}, {role})"
            return f"{where}, line {cell_line}" if cell_line else where
    return None


def describe_exception(
    exc: BaseException, source_map: Mapping[str, Sequence[Sequence[Any]]]
) -> str:
    """One sentence: the error and the notebook cell it came from (innermost generated frame)."""
    place = None
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        place = locate(source_map, frame.filename, frame.lineno or 0)
        if place:
            break
    message = f"{type(exc).__name__}: {exc}"
    return f"{message} (in {place})" if place else message


def source_map() -> dict[str, Any]:
    """The map from generated lines to notebook cells, shipped beside this module."""
    path = Path(__file__).with_name("_sourcemap.json")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def train_main(
    argv: Sequence[str] | None,
    run: Any,
    params_class: Any,
    model_variable: str,
    program: str,
) -> int:
    """The generated `NAME-train` command: parse overrides, run the job, save model and metrics."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        names = ", ".join(f"--{name}" for name in params_class.schema())
        print(
            f"usage: {program}-train [--PARAMETER VALUE | -p PARAMETER VALUE | -f FILE]... [--output DIR]\nparameters: {names or 'none'}"
        )
        return 0
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        values, options = parse_overrides(args, params_class.schema())
        params = params_class(**values)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        namespace = run(params)
    except QualityGateError as exc:
        print(
            f"quality gate failed: {describe_exception(exc, source_map())}",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        if debug:
            raise
        print(f"error: {describe_exception(exc, source_map())}", file=sys.stderr)
        return 1
    saved = save_outputs(
        options.get("output", "model"), namespace, model_variable, params.to_dict()
    )
    print(
        json.dumps({"output": options.get("output", "model"), **saved}, sort_keys=True)
    )
    return 0


def predict_main(argv: Sequence[str] | None, predict: Any, program: str) -> int:
    """The generated `NAME-predict MODEL INPUT [--sha256 HEX]` command: JSON lines out.
    MODEL is a model file or folder, a run folder, or STORE/RUN (a run id or an alias).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]) or len(args) < 2:
        print(
            f"usage: {program}-predict MODEL INPUT [--sha256 HEX]  (INPUT: CSV or JSON lines, - for stdin)"
        )
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    sha256 = None
    if "--sha256" in args:
        position = args.index("--sha256")
        sha256 = args[position + 1] if position + 1 < len(args) else None
        del args[position : position + 2]
    try:
        model = load_model(args[0], sha256)
        inputs = read_inputs(args[1])
        outputs = predict(model, inputs)
    except (ModelIntegrityError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"error: {describe_exception(exc, source_map())}", file=sys.stderr)
        return 1
    for value in outputs:
        print(json.dumps(to_jsonable(value)))
    return 0
