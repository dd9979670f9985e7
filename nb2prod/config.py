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
    monitoring: Mapping[str, Any] | None = (
        None  # the `monitoring` table: alerting rules and dashboard (MONITORING_KEYS)
    )
    airflow: bool = False  # also render airflow/PACKAGE_dag.py (nb2prod/deploy/airflow.py)
    airflow_schedule: str | None = None  # the DAG's schedule (default @daily)
    airflow_score_input: str | None = None  # the daily batch to score, may hold {{ ds }}; none: no score task
    airflow_score_output: str | None = None  # its output folder (default scores/{{ ds }} in the job's folder)
    airflow_store: str | None = None  # the DAG's run store (default: runs/ beside the notebook)
    airflow_command: str | None = None  # how the DAG's tasks run nb2prod (default: nb2prod)
    secrets: tuple[str, ...] = ()  # parameters whose values come from env:/file: and are never written
    secret_name: str | None = None  # the Kubernetes Secret holding them (default: NAME-secrets)
    store: str | None = None  # the run store (nb2prod/runs/location.py); not a build input, so not recorded

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["store"]  # where runs go does not change what a build writes
        data["requirements"] = list(self.requirements)
        data["sweep"] = {k: list(v) for k, v in self.sweep.items()} if self.sweep else None
        # settings added later appear only when set, so existing builds' records stay the same
        for key in ("allow", "data_dir", "verify_tolerance", "monitoring", *AIRFLOW_KEYS, "secrets", "secret_name"):
            if not data[key]:
                del data[key]
        if self.allow:
            data["allow"] = list(self.allow)
        if self.verify_tolerance:
            data["verify_tolerance"] = dict(self.verify_tolerance)
        if self.monitoring:
            data["monitoring"] = dict(self.monitoring)
        if self.secrets:
            data["secrets"] = list(self.secrets)
        return data

    def monitoring_setting(self, key: str) -> Any:
        """A key of the `monitoring` table, or its default (MONITORING_KEYS)."""
        return (self.monitoring or {}).get(key, MONITORING_KEYS[key][0])


# monitoring.KEY -> (default, description); `job` defaults to the distribution name (None here)
MONITORING_KEYS: dict[str, tuple[Any, str]] = {
    "max_error_rate": (0.01, "the share of requests answered 5xx over 5 minutes above which an alert fires"),
    "latency_budget_ms": (100, "the p99 latency of /predict, in milliseconds, above which an alert fires"),
    "alert_for": ("5m", "how long a condition must hold before its alert fires (a Prometheus duration)"),
    "job": (None, "the Prometheus scrape job of the servers (default: the distribution name)"),
}
_PROM_DURATION = re.compile(r"(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?\Z")


_TYPES: dict[str, type] = {
    "name": str, "version": str, "python": str, "model_variable": str, "base_image": str, "requirements": list,
    "output": str, "example_inputs": str, "contract_variable": str, "line_length": int, "sweep": dict, "schedule": str,
    "allow": list, "data_dir": str, "verify_tolerance": float, "monitoring": Mapping,
    "airflow": bool, "airflow_schedule": str, "airflow_score_input": str, "airflow_score_output": str,
    "airflow_store": str, "airflow_command": str,
    "secrets": list, "secret_name": str,
    "store": str,
}  # fmt: skip
AIRFLOW_KEYS = (
    "airflow",
    "airflow_schedule",
    "airflow_score_input",
    "airflow_score_output",
    "airflow_store",
    "airflow_command",
)
_PATHS = ("output", "data_dir", "store", "airflow_score_input", "airflow_score_output", "airflow_store")
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
    for key in ("requirements", "allow", "secrets"):
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
                what = {"allow": "finding codes", "secrets": "parameter names"}.get(key_norm, "requirement strings")
                raise InputError(f"{place}: {key} must be a list of {what}")
            value = list(value)
        elif expected is float:  # a table of name -> non-negative number
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for k, v in value.items()
            ):
                raise InputError(f"{place}: {key} must be a table of metric names to non-negative numbers")
            value = {k: float(v) for k, v in value.items()}
        elif expected is Mapping:
            value = _monitoring_table(value, place, key)
        elif expected is dict:
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, list) and v for k, v in value.items()
            ):
                raise InputError(f"{place}: {key} must be a table of parameter names to non-empty lists of values")
            value = {k: list(v) for k, v in value.items()}
        elif expected is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{place}: {key} must be a whole number")
        elif expected is bool:
            if not isinstance(value, bool):
                raise InputError(f"{place}: {key} must be true or false")
        elif not isinstance(value, str):
            raise InputError(f"{place}: {key} must be a string, not {type(value).__name__}")
        if key_norm in _PATHS and not value.startswith("{{"):  # relative to the file that sets it (a flag: cwd)
            value = str((base / value).resolve()) if not Path(value).is_absolute() else value
        problem = _invalid(key_norm, value)
        if problem:
            raise InputError(f"{place}: {key} {value!r} {problem}")
        values[key_norm] = value


def _monitoring_table(value: Any, place: str, key: str) -> dict[str, Any]:
    """The `monitoring` table, each key checked; a bad value is one sentence naming it."""
    if not isinstance(value, Mapping):
        raise InputError(f"{place}: {key} must be a table (keys: {', '.join(MONITORING_KEYS)})")
    table: dict[str, Any] = {}
    for sub, item in value.items():
        name = str(sub).replace("-", "_")
        where = f"{place}: {key}.{sub}"
        if name not in MONITORING_KEYS:
            raise InputError(f"{where} is not a monitoring setting (known: {', '.join(MONITORING_KEYS)})")
        number = isinstance(item, (int, float)) and not isinstance(item, bool) and item == item
        if name == "max_error_rate" and not (number and 0 < item <= 1):
            raise InputError(f"{where} {item!r} must be a share between 0 and 1, like 0.01 for 1% of requests")
        if name == "latency_budget_ms" and not (number and 0 < item < float("inf")):
            raise InputError(f"{where} {item!r} must be a positive number of milliseconds, like 100")
        if name == "alert_for" and not (isinstance(item, str) and _PROM_DURATION.match(item) and item):
            raise InputError(f"{where} {item!r} must be a Prometheus duration like '5m', '30s' or '1h30m'")
        if name == "job" and not (isinstance(item, str) and item):
            raise InputError(f"{where} {item!r} must be the name of a Prometheus scrape job, a non-empty string")
        table[name] = item
    return table


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
    elif key == "airflow_schedule":
        from nb2prod.deploy.airflow import check_airflow_schedule

        return check_airflow_schedule(value)
    elif key == "airflow_command":
        from nb2prod.deploy.airflow import check_command

        return check_command(value)
    elif key == "allow":
        for code in value:
            if not _FINDING_CODE.match(code):
                return f"holds {code!r}, which is not a finding code like 'untagged-mutation'"
    elif key == "secret_name" and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", value):
        return "is not a Kubernetes Secret name (lower-case letters, digits, '-' and '.')"
    elif key == "data_dir" and not Path(value).is_dir():
        return "is not a folder"
    elif key == "line_length" and not 40 <= value <= 400:
        return "must be between 40 and 400"
    return None
