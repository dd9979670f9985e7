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
import traceback
from pathlib import Path
from typing import Any, Mapping, Sequence

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
    try:
        saved = save_outputs(
            options.get("output", "model"), namespace, model_variable, params.to_dict()
        )
    except UnloadableModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
