"""Job parameters from the command line and parameter files, converted with the schema's types.

The build records each parameter's type (from its literal default in the `parameters` cell) in
`nb2prod.json`. A value given as text (`-p NAME VALUE`) is converted with that type, never guessed
from the text; a value from a YAML/JSON file must already have that type. Unknown names and values
of the wrong type are refused before any kernel starts, naming the parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError

_INT = re.compile(r"^[+-]?\d+$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TYPE_NAMES = {
    "int": "int",
    "integer": "int",
    "float": "float",
    "number": "float",
    "bool": "bool",
    "boolean": "bool",
    "str": "str",
    "string": "str",
    "list": "list",
    "array": "list",
    "tuple": "list",
    "dict": "dict",
    "object": "dict",
    "none": "any",
    "nonetype": "any",
    "null": "any",
    "any": "any",
}


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str  # int | float | bool | str | list | dict | any
    default: Any
    help: str = ""
    nullable: bool = False  # None (YAML null, `-p NAME null`) is accepted
    secret: bool = False  # given as env:VARIABLE or file:PATH, never written to disk

    @property
    def element_type(self) -> str | None:
        """For a list whose default holds values of one type, that type."""
        if self.type != "list" or not isinstance(self.default, (list, tuple)) or not self.default:
            return None
        kinds = {_kind_of(v) for v in self.default}
        if kinds == {"int", "float"}:
            return "float"
        return kinds.pop() if len(kinds) == 1 else None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


def specs_from_schema(schema: Any) -> dict[str, ParameterSpec]:
    """Accept the schema as a list of `{name, type, default, help}` or a mapping name → entry."""
    entries: list[dict[str, Any]] = []
    if isinstance(schema, dict) and "properties" in schema and isinstance(schema["properties"], dict):
        schema = schema["properties"]
    if isinstance(schema, dict) and "parameters" in schema and isinstance(schema["parameters"], (list, dict)):
        schema = schema["parameters"]
    if isinstance(schema, dict):
        entries = [
            {"name": name, **(entry if isinstance(entry, dict) else {"default": entry})}
            for name, entry in schema.items()
        ]
    elif isinstance(schema, list):
        entries = [e for e in schema if isinstance(e, dict)]
    specs: dict[str, ParameterSpec] = {}
    for entry in entries:
        name = str(entry["name"])
        default = entry.get("default")
        raw_type = entry.get("type")
        if isinstance(raw_type, list):  # JSON-schema style ["integer", "null"]
            raw_type = next((t for t in raw_type if t != "null"), "any")
        kind = _TYPE_NAMES.get(str(raw_type).lower()) if raw_type is not None else None
        if kind is None:
            kind = _kind_of(default) if default is not None else "any"
        nullable = bool(entry.get("nullable", default is None))
        help_text = str(entry.get("help") or entry.get("description") or "")
        secret = entry.get("secret") is True
        if secret:
            default = "" if kind == "str" else None
        specs[name] = ParameterSpec(name, kind, default, help_text, nullable or default is None, secret)
    return specs


def _unknown(name: str, specs: dict[str, ParameterSpec], place: str) -> InputError:
    known = ", ".join(sorted(specs)) or "none"
    return InputError(f"{place}: unknown parameter {name!r} (the job's parameters are: {known}).")


def convert_text(spec: ParameterSpec, text: str, place: str = "-p") -> Any:
    """Convert a command-line value with the parameter's declared type."""
    wrong = InputError(f"{place}: parameter {spec.name!r} expects {_article(spec.type)}, got {text!r}.")
    kind = spec.type
    if spec.nullable and kind not in ("str", "any") and text.strip().lower() in ("null", "none", "~"):
        return None
    if kind == "int":
        if not _INT.match(text.strip()):
            try:
                float(text)
            except ValueError:
                raise wrong from None
            if not isinstance(spec.default, int) or isinstance(spec.default, bool):
                raise wrong
            raise InputError(
                f"{wrong.message[:-1]}; the parameter is an int because its default is written"
                f" `{spec.name} = {spec.default!r}`: write `{spec.name} = {float(spec.default)!r}`"
                " in the notebook's parameters cell to accept non-whole values."
            ) from None
        return int(text)
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise wrong from None
        return value
    if kind == "bool":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise wrong
    if kind == "str":
        return text
    if kind in ("list", "dict", "any"):
        import yaml

        stripped = text.strip()
        if kind == "list" and not stripped.startswith(("[", "{")):
            items = [item.strip() for item in stripped.split(",")] if stripped else []
            element = spec.element_type
            if element in ("int", "float", "bool"):
                item_spec = ParameterSpec(spec.name, element, None)
                return [convert_text(item_spec, item, place) for item in items]
            return items
        try:
            loaded = yaml.safe_load(stripped) if stripped else None
        except yaml.YAMLError:
            raise wrong from None
        return check_value(spec, loaded, place, shown=text)
    raise wrong


def check_value(spec: ParameterSpec, value: Any, place: str, shown: Any = None) -> Any:
    """Check (and normalise: int → float, tuple → list) a typed value against the parameter."""
    kind = spec.type
    wrong = InputError(
        f"{place}: parameter {spec.name!r} expects {_article(kind)}, got {shown if shown is not None else value!r}"
        f" ({_kind_of(value) if value is not None else 'null'})."
    )
    if kind == "any" or (value is None and spec.nullable):
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise wrong
        return value
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            raise wrong
        element = spec.element_type
        if element in ("int", "float", "bool", "str"):
            item_spec = ParameterSpec(spec.name, element, None)
            return [check_value(item_spec, item, place, shown=shown if shown is not None else value) for item in value]
        return list(value)
    if kind == "dict":
        if not isinstance(value, dict):
            raise wrong
        return value
    raise wrong


def _article(kind: str) -> str:
    return {
        "int": "an int",
        "float": "a float",
        "bool": "a bool (true/false)",
        "str": "a string",
        "list": "a list",
        "dict": "a mapping",
    }.get(kind, kind)


def read_params_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping of parameter names to values."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the parameters file ({exc.strerror}).") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except (ValueError, Exception) as exc:  # yaml.YAMLError does not subclass ValueError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not valid YAML/JSON ({first}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a mapping of parameter names to values, not a {type(data).__name__}.")
    return data


def resolve_params(
    specs: dict[str, ParameterSpec],
    pairs: list[tuple[str, str]] = (),  # type: ignore[assignment]
    files: list[Path] = (),  # type: ignore[assignment]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Defaults, then each parameters file, then each `-p NAME VALUE`; the values and the overridden names."""
    values, overridden, _secrets = resolve_with_secrets(specs, pairs, files)
    return values, overridden


def resolve_with_secrets(
    specs: dict[str, ParameterSpec],
    pairs: list[tuple[str, str]] = (),  # type: ignore[assignment]
    files: list[Path] = (),  # type: ignore[assignment]
) -> tuple[dict[str, Any], tuple[str, ...], dict[str, str]]:
    """Defaults, then each parameters file, then each `-p NAME VALUE`: the values, the overridden
    names, and where each secret parameter's value came from (`env:NAME`, `file:PATH`).

    A secret is read from the environment variable or file it names (else from
    $NB2PROD_SECRET_<NAME> when set); a literal value for it is refused without being repeated."""
    from nb2prod.runtime import ParameterError, resolve_secrets

    values = {name: spec.default for name, spec in specs.items()}
    overridden: list[str] = []
    references: dict[str, tuple[Any, str]] = {}  # secret -> (reference, place)
    for path in files:
        for name, value in read_params_file(path).items():
            spec = specs.get(str(name))
            if spec is None:
                raise _unknown(str(name), specs, str(path))
            if spec.secret:
                references[spec.name] = (value, str(path))
            else:
                values[spec.name] = check_value(spec, value, str(path))
            overridden.append(spec.name)
    for name, text in pairs:
        spec = specs.get(name)
        if spec is None:
            raise _unknown(name, specs, f"-p {name}")
        if spec.secret:
            references[name] = (text, f"-p {name}")
        else:
            values[name] = convert_text(spec, text, f"-p {name}")
        overridden.append(name)
    schema = {
        name: {"type": spec.type, "nullable": spec.nullable, "secret": True}
        for name, spec in specs.items()
        if spec.secret
    }
    secrets: dict[str, str] = {}
    for name in schema:
        given = {name: references[name][0]} if name in references else {}
        place = references[name][1] if name in references else f"secret parameter {name!r}"
        try:
            found, sources = resolve_secrets({name: schema[name]}, given)
        except ParameterError as exc:
            text = str(exc)
            raise InputError(f"{place}: {text[0].lower() + text[1:]}.") from None
        values.update(found)
        secrets.update(sources)
    return values, tuple(dict.fromkeys(overridden)), secrets
