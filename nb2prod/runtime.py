"""Run-time helpers that every generated package carries as `_runtime.py`.

This file is copied verbatim into generated packages, so it depends on the standard library only
(joblib and pandas are imported when used) and on nothing else from nb2prod.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import math
import os
import re
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MODEL_FILE = "model.joblib"
TYPES = ("int", "float", "str", "bool", "list", "dict", "any")


class QualityGateError(AssertionError):
    """A metrics gate of the notebook failed; the run must not be promoted."""


def quality_gate_failed(message: Any) -> Any:
    """Raise QualityGateError: an `assert` of a metrics cell that shares its line with
    another statement becomes `(TEST) or _nb2prod.quality_gate_failed(MESSAGE)`."""
    raise QualityGateError(message)


# where the job's own classes and functions live (train.run and papermill run it as __main__)
JOB_MODULES = ("__main__", "__mp_main__")


class UnloadableModelError(ValueError):
    """The model refers to a class or function that exists only in the job's namespace."""


class _NullSink:
    def write(self, data: bytes) -> int:
        return len(data)


def job_references(value: Any) -> list[str]:
    """Classes and functions of the job's own namespace (`__main__`) that pickling `value` refers
    to by module and name: a saved model holding them cannot be loaded anywhere else."""
    import pickle

    found: list[str] = []

    class Probe(pickle.Pickler):
        def reducer_override(self, obj: Any) -> Any:
            by_name = isinstance(obj, type) or (
                callable(obj) and hasattr(obj, "__qualname__")
            )
            kind = obj if by_name else type(obj)
            if getattr(kind, "__module__", None) in JOB_MODULES:
                name = getattr(kind, "__qualname__", repr(kind))
                if name not in found:
                    found.append(name)
            return NotImplemented

    try:
        Probe(_NullSink(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception:  # noqa: BLE001 - other problems are for the model's saver
        pass
    return found


def check_loadable(model: Any, model_variable: str) -> None:
    """Refuse a model that refers to the job's own classes or functions."""
    names = job_references(model)
    if names:
        listed = ", ".join(f"`{n}`" for n in names)
        raise UnloadableModelError(
            f"the model {model_variable!r} refers to {listed}, defined in a train or "
            "metrics cell: a saved model refers to it by module and name and it exists "
            "only while the job runs, so predict could not load the model; move "
            f"{listed} to an `export` cell"
        )


class ParameterError(ValueError):
    """A parameter value that does not fit the parameter schema."""


class ModelIntegrityError(RuntimeError):
    """A model file whose sha256 is not the one recorded when it was saved."""


class SigningKeyError(ValueError):
    """The configured signing key cannot be read (a missing, unreadable or empty key file)."""


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
            if key in ("output", "data-dir", "data_dir"):
                options[key.replace("-", "_")] = value
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


def load_model(
    path: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    trust_pickle: bool = False,
) -> Any:
    """Load a model only if its sha256 matches. `path` is a model file (with `sha256`, or the
    `.sha256` file beside it), a folder holding model.joblib, a run folder of an nb2prod run
    store, or STORE/RUN where RUN is a run id, a unique prefix of one, or an alias.

    A run is loaded only when its whole folder matches its run.json (see `verify_run`); when a
    signing key is configured (`NB2PROD_SIGNING_KEY` or `NB2PROD_SIGNING_KEY_FILE`) the run must
    carry a valid signature. A joblib (pickle) model, which runs code when loaded, is loaded from a
    run only when the run is signed with the configured key or `trust_pickle` is true; a bare
    joblib file only when no signing key is configured or `trust_pickle` is true."""
    path = Path(path)
    run = find_run(path)
    if run is not None:
        return _load_run_model(run, trust_pickle)
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
    if not trust_pickle and read_signing_key() is not None:
        raise ModelIntegrityError(
            f"{path}: a signing key is configured and a bare joblib file carries no signature, "
            "so it is not loaded (load a signed run, or pass --trust-pickle)"
        )
    _verify(path, sha256)
    return joblib.load(path)


# --- run ids, aliases and whole-run verification (the same code runs in nb2prod) -----------
RUN_RECORD = "run.json"
RUN_SIGNATURE = "run.json.sig"
ALIASES_DIR = "aliases"
SIGNING_KEY_ENV = "NB2PROD_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "NB2PROD_SIGNING_KEY_FILE"
SIGNATURE_ALGORITHM = "hmac-sha256"
RUN_ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
ALIAS_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


def is_run_id(text: object) -> bool:
    """`20261130T133403Z-3f9a1c` exactly: the whole text, no trailing newline."""
    return isinstance(text, str) and RUN_ID_PATTERN.fullmatch(text) is not None


def is_alias_name(text: object) -> bool:
    """A letter, then up to 63 letters, digits, '.', '_' or '-'; never '..', never a run id."""
    return (
        isinstance(text, str)
        and ALIAS_PATTERN.fullmatch(text) is not None
        and ".." not in text
    )


def run_folder_problems(
    run_dir: str | os.PathLike[str], files: Mapping[str, str]
) -> list[str]:
    """Every way the folder differs from the files its run.json records, sorted by path.

    `files` maps each relative path (all but run.json and run.json.sig) to its sha256. A file
    missing, changed or added, and a symbolic link anywhere (a file or a folder replaced by a
    link) or anything that is not a regular file or folder, is a problem. Recorded paths are
    never opened directly: only what is found by walking the folder is read."""
    root = Path(run_dir)
    if root.is_symlink():
        return [f"{root.name} is a symbolic link, not a run folder"]
    if not root.is_dir():
        return [f"{root.name} is not a folder"]
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            entries = sorted(os.scandir(root / rel_dir), key=lambda e: e.name)
        except OSError as exc:
            found.append((rel_dir, f"{rel_dir}/ cannot be read ({exc.strerror})"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            seen.add(rel)
            if entry.is_symlink():
                found.append((rel, f"{rel} is a symbolic link"))
            elif entry.is_dir(follow_symlinks=False):
                pending.append(rel)
            elif rel in (RUN_RECORD, RUN_SIGNATURE) and entry.is_file():
                continue
            elif not entry.is_file(follow_symlinks=False):
                found.append((rel, f"{rel} is not a regular file"))
            elif rel not in files:
                found.append((rel, f"{rel} was added after the run was recorded"))
            elif not hmac.compare_digest(sha256_file(entry.path), str(files[rel])):
                found.append(
                    (rel, f"{rel} changed since the run was recorded (sha256 differs)")
                )
    for rel in files:
        if rel not in seen:
            found.append((rel, f"{rel} is missing"))
    return [message for _, message in sorted(found)]


def read_signing_key(
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> bytes | None:
    """The HMAC key: `key_file` if given, else `$NB2PROD_SIGNING_KEY` (its UTF-8 bytes), else
    the file named by `$NB2PROD_SIGNING_KEY_FILE`; None when none is set. A key file's trailing
    newline is not part of the key."""
    env = os.environ if environ is None else environ
    if key_file is None:
        text = env.get(SIGNING_KEY_ENV)
        if text:
            return text.encode("utf-8")
        key_file = env.get(SIGNING_KEY_FILE_ENV) or None
        if key_file is None:
            return None
    try:
        key = Path(key_file).read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise SigningKeyError(
            f"cannot read the signing key file {key_file} ({exc.strerror})"
        ) from None
    if not key:
        raise SigningKeyError(f"the signing key file {key_file} is empty")
    return key


def signing_key_id(key: bytes) -> str:
    """A short fingerprint naming a key in signatures (it does not reveal the key)."""
    return hashlib.sha256(b"nb2prod signing key\0" + key).hexdigest()[:16]


def sign_record(record: bytes, key: bytes) -> str:
    """The text of run.json.sig for the exact bytes of a run.json."""
    signature = hmac.new(key, record, hashlib.sha256).hexdigest()
    data = {
        "algorithm": SIGNATURE_ALGORITHM,
        "key_id": signing_key_id(key),
        "signature": signature,
        "signed": RUN_RECORD,
    }
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def signature_problem(run_dir: str | os.PathLike[str], key: bytes) -> str | None:
    """Why the run's run.json.sig does not prove its run.json was signed with `key`, or None."""
    folder = Path(run_dir)
    path = folder / RUN_SIGNATURE
    if path.is_symlink() or not path.is_file():
        return (
            f"{RUN_SIGNATURE} is missing: the run is not signed, "
            "and a signing key is configured"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        record = (folder / RUN_RECORD).read_bytes()
    except (OSError, ValueError):
        return f"{RUN_SIGNATURE} is not a readable signature"
    if not isinstance(data, dict) or data.get("algorithm") != SIGNATURE_ALGORITHM:
        return f"{RUN_SIGNATURE} is not an {SIGNATURE_ALGORITHM} signature"
    expected = hmac.new(key, record, hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, str(data.get("signature", ""))):
        return None
    if data.get("key_id") != signing_key_id(key):
        return (
            f"{RUN_SIGNATURE} was made with another key (id {data.get('key_id')}), "
            "not the configured one"
        )
    return (
        f"{RUN_SIGNATURE} does not match {RUN_RECORD}: the record changed after signing"
    )


def read_run_record(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed run.json of a run folder; ModelIntegrityError names it when it is unusable."""
    path = Path(run_dir) / RUN_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(
            f"{path}: not a readable run record ({exc})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files", {}), dict):
        raise ModelIntegrityError(f"{path}: not a run record (expected a JSON object)")
    return data


def run_problems(
    run_dir: str | os.PathLike[str], record: Mapping[str, Any], key: bytes | None
) -> list[str]:
    """Everything wrong with a run folder given its parsed run.json: a folder named like a run
    id that holds another run, then (with `key`) its signature, then its files."""
    name = Path(run_dir).name
    problems = []
    if is_run_id(name) and record.get("run_id") != name:
        problems.append(
            f"{RUN_RECORD} records run {record.get('run_id')!r}, not {name}"
        )
    if key is not None:
        problem = signature_problem(run_dir, key)
        if problem:
            problems.append(problem)
    files = record.get("files")
    return problems + run_folder_problems(
        run_dir, files if isinstance(files, dict) else {}
    )


def verify_run(
    run_dir: str | os.PathLike[str], key: bytes | None = None
) -> dict[str, Any]:
    """Check a whole run folder (signature first when `key` is given) and return its record.

    ModelIntegrityError names the first problem: an unsigned or wrongly signed run, or a file
    missing, changed, added or linked (see `run_folder_problems`)."""
    record = read_run_record(run_dir)
    problems = run_problems(run_dir, record, key)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelIntegrityError(
            f"{Path(run_dir)}: {problems[0]}{more}; the run is not loaded"
        )
    return record


def find_run(path: Path) -> Path | None:
    """The run folder `path` names: a folder with run.json, or STORE/RUN_ID, STORE/PREFIX, STORE/ALIAS.

    Alias names and the run ids aliases point at are checked like nb2prod checks them, so an
    alias can never lead out of its store."""
    if (path / RUN_RECORD).is_file():
        return path
    store, ref = path.parent, path.name
    alias = store / ALIASES_DIR / f"{ref}.json"
    if is_alias_name(ref) and alias.is_file():
        try:
            run_id = json.loads(alias.read_text(encoding="utf-8")).get("run_id")
        except (OSError, ValueError, AttributeError):
            raise ModelIntegrityError(f"{alias}: not a readable alias file") from None
        if not is_run_id(run_id):
            raise ModelIntegrityError(
                f"{alias}: alias {ref!r} points at {run_id!r}, which is not a run id"
            )
        return store / run_id
    if store.is_dir() and ref:
        matches = sorted(
            p
            for p in store.iterdir()
            if is_run_id(p.name)
            and p.name.startswith(ref)
            and (p / RUN_RECORD).is_file()
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


def _load_run_model(run: Path, trust_pickle: bool = False) -> Any:
    key = read_signing_key()
    record = verify_run(run, key)
    model = record.get("model") or {}
    if not isinstance(model, dict) or not model.get("file"):
        raise ModelIntegrityError(f"{run}: this run recorded no model")
    path = run / str(model["file"])
    if str(model["file"]) not in (record.get("files") or {}):
        raise ModelIntegrityError(
            f"{run}: the model file {model['file']} is not among the run's recorded files"
        )
    _verify(path, str(model.get("sha256", "")))
    if model.get("format") == "skops":
        import skops.io

        untrusted = set(skops.io.get_untrusted_types(file=path))
        unexpected = sorted(untrusted - set(model.get("trusted_types") or ()))
        if unexpected:
            raise ModelIntegrityError(
                f"{path}: holds types the run did not record ({', '.join(unexpected)}), so it is not loaded"
            )
        return skops.io.load(path, trusted=sorted(untrusted))
    if model.get("format") != "joblib":
        raise ModelIntegrityError(
            f"{path}: unknown model format {model.get('format')!r}, so it is not loaded"
        )
    if key is None and not trust_pickle:
        raise ModelIntegrityError(
            f"{path}: a joblib (pickle) model can run code when loaded, and the run is not "
            "signed: set NB2PROD_SIGNING_KEY to the key the run was signed with, "
            "or pass --trust-pickle"
        )
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
    check_loadable(namespace[model_variable], model_variable)
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


DATA_DIR_ENV = "NB2PROD_DATA_DIR"
RECORD_FILE = "nb2prod.json"


def job_workdir(here: str | os.PathLike[str], data_dir: str | None = None) -> Path:
    """The job's working directory, so relative data paths mean what they meant in the notebook.

    One rule: `data_dir` (`--data-dir`), else $NB2PROD_DATA_DIR, else, for a package inside its
    build folder (BUILD/src/PKG/), the folder the build recorded (the notebook's folder, or the
    configured `data_dir`), else the current directory (an installed package, e.g. in the image).
    """
    if data_dir:
        return Path(data_dir).resolve()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).resolve()
    package_dir = Path(here).resolve().parent
    build = package_dir.parent.parent
    if package_dir.parent.name == "src" and (build / RECORD_FILE).is_file():
        try:
            record = json.loads((build / RECORD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = {}
        recorded = record.get("workdir") if isinstance(record, dict) else None
        if isinstance(recorded, str) and (build / recorded).is_dir():
            return (build / recorded).resolve()
    return Path.cwd()


class working_directory:
    """`with working_directory(path):` runs the block in `path`, then returns to where it was."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.before: str | None = None

    def __enter__(self) -> Path:
        self.before = os.getcwd()
        os.chdir(self.path)
        return self.path

    def __exit__(self, *exc: Any) -> None:
        if self.before is not None:
            os.chdir(self.before)


JOB_MODULE = "_job.py"


def run_job(package: str, params: Any) -> dict[str, Any]:
    """Execute the job's cells (`_job.py` beside this module) at module level and return the
    names they bound, as papermill runs job/train.ipynb: in a fresh namespace named `__main__`,
    with the parameters bound first, cell after cell. An error in a metrics cell lets the later
    cells run and is raised at the end, with the names bound on its `job_namespace` attribute
    (a failed gate still has metrics and a model to record); any other error stops the job.
    """
    import ast
    import builtins
    import dataclasses

    path = Path(__file__).with_name(JOB_MODULE)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    chunks = [(e[0], e[1], e[4]) for e in source_map().get(JOB_MODULE, [])]
    # (the cell's role, its statements), in order
    groups: list[tuple[str | None, list[ast.stmt]]] = []
    last = None
    for statement in tree.body:
        key = next(
            (i for i, c in enumerate(chunks) if c[0] <= statement.lineno <= c[1]), None
        )
        if not groups or key != last:
            groups.append((chunks[key][2] if key is not None else None, []))
        groups[-1][1].append(statement)
        last = key
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "__builtins__": builtins,
        "__package__": package,
    }
    if dataclasses.is_dataclass(params):
        values = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)}
    else:
        values = dict(params)
    namespace.update(values)
    failed: Exception | None = None
    for role, statements in groups:
        module = ast.Module(body=statements, type_ignores=[])
        code = compile(module, str(path), "exec", dont_inherit=True)
        try:
            exec(code, namespace)  # noqa: S102 - the package's own job code
        except Exception as exc:
            if role != "metrics":
                # after a failed metrics cell, that failure is the run's: nothing to collect
                if failed is not None:
                    raise failed from None
                raise
            failed = failed or exc
    if failed is not None:
        try:
            failed.job_namespace = _job_names(namespace)  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            pass
        raise failed
    return _job_names(namespace)


def _job_names(namespace: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in namespace.items()
        if not (k.startswith("__") and k.endswith("__"))
    }


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
            f"usage: {program}-train [--PARAMETER VALUE | -p PARAMETER VALUE | -f FILE]... [--output DIR] [--data-dir DIR]\n"
            f"parameters: {names or 'none'}\n"
            f"working directory of the job: --data-dir, else ${DATA_DIR_ENV}, else the notebook's folder"
            " (or config data_dir) when run from the build folder, else the current directory"
        )
        return 0
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        values, options = parse_overrides(args, params_class.schema())
        params = params_class(**values)
        workdir = job_workdir(__file__, options.get("data_dir"))
        if not workdir.is_dir():
            raise ParameterError(f"--data-dir {workdir} is not a folder")
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output = os.path.abspath(options.get("output", "model"))
    try:
        with working_directory(workdir):
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
    try:
        saved = save_outputs(output, namespace, model_variable, params.to_dict())
    except UnloadableModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"output": output, **saved}, sort_keys=True))
    return 0


def predict_main(argv: Sequence[str] | None, predict: Any, program: str) -> int:
    """The generated `NAME-predict MODEL INPUT [--sha256 HEX] [--trust-pickle]` command:
    JSON lines out. MODEL is a model file or folder, a run folder, or STORE/RUN (a run id or
    an alias); a run is verified whole (and its signature, when a key is configured).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    trust_pickle = "--trust-pickle" in args
    args = [a for a in args if a != "--trust-pickle"]
    if args[:1] in (["-h"], ["--help"]) or len(args) < 2:
        print(
            f"usage: {program}-predict MODEL INPUT [--sha256 HEX] [--trust-pickle]  (INPUT: CSV or JSON lines, - for stdin)"
        )
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    sha256 = None
    if "--sha256" in args:
        position = args.index("--sha256")
        sha256 = args[position + 1] if position + 1 < len(args) else None
        del args[position : position + 2]
    try:
        model = load_model(args[0], sha256, trust_pickle=trust_pickle)
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


EXPLAIN_EXTRA = "pip install nb2prod[explain]"
_EXPLAINERS: Any = (
    None  # model -> (method, explainer, ...), built on first use (weak keys)
)


class ExplainUnavailable(Exception):
    """Nothing can explain this model: no explain cell, and SHAP cannot (missing, or the model's kind)."""


def explain_rows(explain: Any, model: Any, inputs: Any) -> list[Any]:
    """`explain(model, inputs)` as JSON-ready values, one per input row (else ValueError)."""
    result = explain(model, inputs)
    values = (
        [to_jsonable(v) for v in result]
        if isinstance(result, (list, tuple))
        else list(to_jsonable(result))
    )
    rows = len(inputs)
    if len(values) != rows:
        raise ValueError(f"explain returned {len(values)} explanations for {rows} rows")
    return values


def _explained_parts(model: Any) -> tuple[Any, Any, str]:
    """(the estimator SHAP explains, the steps before it or None, "tree" | "linear")."""
    final, before = model, None
    steps = getattr(model, "steps", None)
    if isinstance(steps, list) and steps and hasattr(model, "__getitem__"):
        final, before = steps[-1][1], model[:-1]
    kind = type(final)
    where = kind.__module__
    if where.startswith(("sklearn.ensemble", "sklearn.tree")) and (
        hasattr(final, "estimators_") or hasattr(final, "tree_")
    ):
        return final, before, "tree"
    if where.startswith(("sklearn.linear_model", "sklearn.svm")) and hasattr(
        final, "coef_"
    ):
        return final, before, "linear"
    raise ExplainUnavailable(
        f"a {where}.{kind.__qualname__} cannot be explained without an explain cell: SHAP "
        "explains scikit-learn tree ensembles and linear models here; add a cell defining "
        "`explain(model, inputs)` (tag `explain`)"
    )


def _explainer(model: Any) -> tuple[Any, Any, str, Any]:
    """(final estimator, steps before it, method, SHAP explainer), cached per model object."""
    global _EXPLAINERS
    import weakref

    if _EXPLAINERS is None:
        _EXPLAINERS = weakref.WeakKeyDictionary()
    try:
        cached = _EXPLAINERS.get(model)
    except TypeError:  # not weakly referenceable: built every time
        cached = None
    if cached is not None:
        return cached
    final, before, kind = _explained_parts(model)
    try:
        import shap
    except ImportError:
        raise ExplainUnavailable(
            f"explanations of this model need SHAP, which is not installed: {EXPLAIN_EXTRA} "
            "(or pip install shap), or add an explain cell to the notebook"
        ) from None
    if kind == "tree":
        explainer = shap.TreeExplainer(final)
        method = "shap-tree"
    else:
        import numpy

        width = len(numpy.atleast_2d(final.coef_)[0])
        background = shap.maskers.Independent(numpy.zeros((1, width)))
        explainer = shap.LinearExplainer(final, background)
        method = "shap-linear"
    built = (final, before, method, explainer)
    try:
        _EXPLAINERS[model] = built
    except TypeError:
        pass
    return built


def _feature_matrix(final: Any, before: Any, features: Any) -> tuple[Any, list[str]]:
    import numpy

    if (
        isinstance(features, (list, tuple))
        and features
        and isinstance(features[0], Mapping)
    ):
        import pandas

        features = pandas.DataFrame.from_records(list(features))
    names = [str(c) for c in getattr(features, "columns", ())]
    if before is not None:
        features = before.transform(features)
        try:
            names = [str(n) for n in before.get_feature_names_out()]
        except Exception:  # noqa: BLE001 - a step without feature names: numbered
            names = []
        if hasattr(features, "toarray"):
            features = features.toarray()
    matrix = numpy.asarray(features, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix.reshape(1, -1)
    if len(names) != matrix.shape[1]:
        known = getattr(final, "feature_names_in_", None)
        names = (
            [str(n) for n in known]
            if known is not None and len(known) == matrix.shape[1]
            else [f"x{i}" for i in range(matrix.shape[1])]
        )
    return matrix, names


def _scores(
    model: Any, explainer: Any, method: str, features: Any, rows: int
) -> tuple[Any, str]:
    """The model's own scores that SHAP's values explain, as a (rows, outputs) array, and
    what they are: `model` (the whole Pipeline) is called on the features it is given.
    """
    import numpy

    output = getattr(getattr(explainer, "model", None), "tree_output", None)
    if method == "shap-tree" and output == "probability":
        return numpy.asarray(model.predict_proba(features), dtype=float), "probability"
    if hasattr(model, "decision_function") and (
        method == "shap-linear" or output == "log_odds"
    ):
        scores = numpy.asarray(model.decision_function(features), dtype=float)
        return scores.reshape(rows, -1), "decision function (log-odds)"
    scores = numpy.asarray(model.predict(features), dtype=float)
    return scores.reshape(rows, -1), "prediction"


def explain_model(
    model: Any, features: Any, *, features_from: str | None = None
) -> list[dict[str, Any]]:
    """Per-row SHAP contributions of a scikit-learn tree ensemble or linear model (also the last
    step of a Pipeline) to its score: {"base_value", "value", "contributions": [{"feature",
    "value", "contribution"}] largest first, "method", "output", "features"}; base_value plus the
    contributions is value. Raises ExplainUnavailable with the fix when SHAP cannot explain it.
    """
    import numpy

    final, before, method, explainer = _explainer(model)
    if (
        isinstance(features, (list, tuple))
        and features
        and isinstance(features[0], Mapping)
    ):
        import pandas

        features = pandas.DataFrame.from_records(list(features))
    matrix, names = _feature_matrix(final, before, features)
    if not len(matrix):
        return []
    raw = explainer.shap_values(matrix)
    values = (
        numpy.stack([numpy.asarray(v) for v in raw], axis=-1)
        if isinstance(raw, list)
        else numpy.asarray(raw)
    )
    if values.ndim == 2:
        values = values[..., None]
    base = numpy.atleast_1d(numpy.asarray(explainer.expected_value, dtype=float))
    scores, output = _scores(model, explainer, method, features, len(matrix))
    outputs = values.shape[2]
    classes = list(getattr(final, "classes_", ()))
    explanations = []
    for row in range(len(matrix)):
        if outputs == 1:
            column = 0
        elif outputs == 2:
            column = 1
        else:
            column = int(numpy.argmax(scores[row])) if scores.shape[1] == outputs else 0
        contributions = values[row, :, column]
        if scores.shape[1] == outputs:
            value = float(scores[row, column])
        else:
            value = float(base[column] + contributions.sum())
        order = sorted(range(len(names)), key=lambda i: -abs(float(contributions[i])))
        explanation: dict[str, Any] = {
            "base_value": float(base[column] if len(base) > column else base[0]),
            "value": value,
            "contributions": [
                {
                    "feature": names[i],
                    "value": to_jsonable(matrix[row, i]),
                    "contribution": float(contributions[i]),
                }
                for i in order
            ],
            "method": method,
            "output": output
            + (
                f" of class {to_jsonable(classes[column])}"
                if len(classes) > 1 and outputs > 1
                else ""
            ),
            "features": (
                f"the model's features, from {features_from}"
                if features_from
                else "the model's input features"
            ),
        }
        explanations.append(explanation)
    return explanations
