"""Configuration: `[tool.nb2prod]` in the nearest pyproject.toml, then the notebook's
`metadata.nb2prod`, then command-line flags, each overriding the one before.

Every option lives in the one frozen `Config`, so a build is a function of (notebook, Config,
environment).
"""

from __future__ import annotations

import keyword
import re
import sys
import tomllib
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from nb2prod.errors import InputError


@dataclass(frozen=True)
class Config:
    name: str | None = None  # distribution name; default: the notebook's file stem
    version: str = "0.1.0"
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    model_variable: str = "model"
    base_image: str | None = None  # default: python:<python>-slim
    requirements: tuple[str, ...] = ()  # extra or overriding pins, e.g. "scikit-learn==1.5.2"
    output: str | None = None  # default: build/<name> beside the notebook
    example_inputs: str | None = None  # train variable whose rows feed the predict contract test
    contract_variable: str | None = None  # what the model is fitted on (default: from the fit call)
    line_length: int = 88
    sweep: Mapping[str, list[Any]] | None = None  # parameter -> values, for k8s/sweep-job.yaml
    schedule: str | None = None  # cron schedule of k8s/retrain-cronjob.yaml
    allow: tuple[str, ...] = ()  # error finding codes reported as notes ("allowed by configuration")
    data_dir: str | None = None  # the job's working directory (default: the notebook's folder)
    verify_tolerance: Mapping[str, float] | None = None  # metric -> allowed absolute difference in `verify`
    store: str | None = None  # the run store (nb2prod/runs/location.py); not a build input, so not recorded

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["store"]  # where runs go does not change what a build writes
        data["requirements"] = list(self.requirements)
        data["sweep"] = {k: list(v) for k, v in self.sweep.items()} if self.sweep else None
        # settings added later appear only when set, so existing builds' records stay the same
        for key in ("allow", "data_dir", "verify_tolerance"):
            if not data[key]:
                del data[key]
        if self.allow:
            data["allow"] = list(self.allow)
        if self.verify_tolerance:
            data["verify_tolerance"] = dict(self.verify_tolerance)
        return data


_TYPES: dict[str, type] = {
    "name": str, "version": str, "python": str, "model_variable": str, "base_image": str, "requirements": list,
    "output": str, "example_inputs": str, "contract_variable": str, "line_length": int, "sweep": dict, "schedule": str,
    "allow": list, "data_dir": str, "verify_tolerance": float, "store": str,
}  # fmt: skip
_FINDING_CODE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(
    notebook_path: Path, notebook_metadata: Mapping[str, Any], flags: Mapping[str, Any] | None = None
) -> Config:
    """Merge the three layers; an unknown key or a value of the wrong type names its place."""
    values: dict[str, Any] = {}
    pyproject = find_pyproject(notebook_path.resolve().parent)
    if pyproject is not None:
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{pyproject} is not valid TOML: {exc}") from None
        section = data.get("tool", {}).get("nb2prod", {})
        _merge(values, section, f"{pyproject} [tool.nb2prod]", base=pyproject.parent)
    _merge(values, notebook_metadata, f"{notebook_path.name} metadata.nb2prod", base=notebook_path.parent)
    _merge(values, {k: v for k, v in (flags or {}).items() if v is not None}, "the command line", base=Path.cwd())
    for key in ("requirements", "allow"):
        if key in values:
            values[key] = tuple(values[key])
    return Config(**values)


def section_settings(section: Any, place: str, base: Path) -> dict[str, Any]:
    """One layer of settings checked as `load_config` checks it (paths made absolute against `base`)."""
    values: dict[str, Any] = {}
    _merge(values, section, place, base)
    return values


def _merge(values: dict[str, Any], layer: Mapping[str, Any], place: str, base: Path) -> None:
    if not isinstance(layer, Mapping):
        raise InputError(f"{place} must be a table of settings")
    for key, value in layer.items():
        key_norm = str(key).replace("-", "_")
        expected = _TYPES.get(key_norm)
        if expected is None:
            known = ", ".join(f.name for f in fields(Config))
            raise InputError(f"{place}: unknown setting {key!r} (known: {known})")
        if expected is list:
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                what = "finding codes" if key_norm == "allow" else "requirement strings"
                raise InputError(f"{place}: {key} must be a list of {what}")
            value = list(value)
        elif expected is float:  # a table of name -> non-negative number
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for k, v in value.items()
            ):
                raise InputError(f"{place}: {key} must be a table of metric names to non-negative numbers")
            value = {k: float(v) for k, v in value.items()}
        elif expected is dict:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, list) and v for k, v in value.items()
            ):
                raise InputError(f"{place}: {key} must be a table of parameter names to non-empty lists of values")
            value = {k: list(v) for k, v in value.items()}
        elif expected is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{place}: {key} must be a whole number")
        elif not isinstance(value, str):
            raise InputError(f"{place}: {key} must be a string, not {type(value).__name__}")
        if key_norm in ("output", "data_dir", "store"):
            value = str((base / value).resolve()) if not Path(value).is_absolute() else value
        problem = _invalid(key_norm, value)
        if problem:
            raise InputError(f"{place}: {key} {value!r} {problem}")
        values[key_norm] = value


def _invalid(key: str, value: Any) -> str | None:
    """Why a setting's value can't be used, or None."""
    if key == "version":
        from packaging.version import InvalidVersion, Version

        from nb2prod.deploy.image import check_version

        try:
            Version(value)
            check_version(value)  # what the image and the package metadata accept: no spaces around it
        except (InvalidVersion, InputError):
            return "is not a version (PEP 440, e.g. 1.2.0, without spaces)"
    elif key == "python":
        if not re.fullmatch(r"3\.[0-9]{1,2}", value):
            return "is not a Python version like 3.11"
    elif key in ("model_variable", "contract_variable"):
        if not value.isidentifier() or keyword.iskeyword(value):
            return "is not a Python variable name"
        if unicodedata.normalize("NFKC", value) != value:
            return (
                f"is not in the form Python gives the name (write {unicodedata.normalize('NFKC', value)!r}, PEP 3131)"
            )
    elif key == "base_image":
        from nb2prod.deploy.image import check_image_ref

        try:
            check_image_ref(value)
        except InputError:
            return "is not an image reference like python:3.11-slim"
    elif key == "requirements":
        from nb2prod.escape import EscapeError, requirement_line

        for spec in value:
            try:
                requirement_line(spec)
            except EscapeError:
                return f"holds {spec!r}, which is not a one-line requirement like name==1.0"
    elif key == "schedule":
        from nb2prod.deploy.cluster_manifests import check_schedule

        try:
            check_schedule(value)  # the same check as `nb2prod image manifests --schedule`
        except InputError:
            return "is not a cron schedule of five fields separated by single spaces, like '0 3 * * 1', or a macro like '@daily'"
    elif key == "allow":
        for code in value:
            if not _FINDING_CODE.match(code):
                return f"holds {code!r}, which is not a finding code like 'untagged-mutation'"
    elif key == "data_dir" and not Path(value).is_dir():
        return "is not a folder"
    elif key == "line_length" and not 40 <= value <= 400:
        return "must be between 40 and 400"
    return None
