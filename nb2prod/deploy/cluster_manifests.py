"""Cluster manifests for a built image: Kubernetes Jobs and a Kubeflow Pipelines component.

`render_manifest_files(ctx)` is pure and returns relative path -> YAML text:

- `k8s/train-job.yaml`       a batch/v1 Job running the training job with its parameters
- `k8s/retrain-cronjob.yaml` a batch/v1 CronJob retraining on a schedule
- `k8s/sweep-job.yaml`       an Indexed Job, one pod per point of a parameter grid (when a grid is set)
- `kubeflow/component.yaml`  a Kubeflow Pipelines component (the v1 component spec, which KFP v2 loads)

Every document is a data structure dumped with `yaml.safe_dump`; no value is pasted into YAML
text, so a notebook-derived name or value cannot add keys or documents.
"""

from __future__ import annotations

import itertools
import json
import keyword
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nb2prod import __version__, escape
from nb2prod.deploy.image import RUNTIME_UID, check_dist_name, check_image_ref, check_version
from nb2prod.errors import InputError

ENTRYPOINT = ["/opt/venv/bin/python", "/opt/app/entrypoint.py"]
RUNS_MOUNT = "/runs"
MAX_SWEEP_POINTS = 10_000
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?-]+\Z")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_QUANTITY = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?\Z")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?\Z")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")
SECRET_ENV_PREFIX = "NB2PROD_SECRET_"  # the runtime's fallback variable for a secret parameter
_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": float,
    "bool": bool,
    "str": str,
    "list": list,
    "dict": dict,
    "any": (int, float, bool, str, list, dict),
}
_KFP_TYPES = {
    "int": "Integer",
    "float": "Float",
    "bool": "Boolean",
    "str": "String",
    "list": "JsonArray",
    "dict": "JsonObject",
    "any": "String",
}


@dataclass(frozen=True)
class Parameter:
    """One parameter of the training job, as the build manifest's parameter schema records it:
    name, type (`int`, `float`, `bool`, `str`, `list`, `dict`, `any`), default, help, nullable."""

    name: str
    type: str
    default: Any
    help: str = ""
    nullable: bool = False
    secret: bool = False  # its value comes from a Kubernetes Secret, never from the manifest

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise InputError(f"the parameter name {self.name!r} is not a valid Python identifier.")
        if self.type not in _TYPES:
            raise InputError(f"parameter {self.name!r} has type {self.type!r}; expected one of {', '.join(_TYPES)}.")
        if not isinstance(self.help, str):
            raise InputError(f"the help text of parameter {self.name!r} must be a string.")

    def check_value(self, value: Any, where: str) -> Any:
        """`value` if it fits the parameter's type (an int is a float), else an InputError."""
        if value is None and self.nullable:
            return value
        expected = _TYPES[self.type]
        fits = isinstance(value, expected) and not (self.type in ("int", "float") and isinstance(value, bool))
        if self.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            fits = True
        if self.type == "float" and fits and not math.isfinite(float(value)):
            fits = False
        if not fits:
            raise InputError(f"{where}: {value!r} is not a valid {self.type} for parameter {self.name!r}.")
        return value


def parameters_from_schema(schema: Mapping[str, Mapping[str, Any]]) -> tuple[Parameter, ...]:
    """Parameters from the `parameters` schema of a build's nb2prod.json, in its order."""
    if not isinstance(schema, Mapping):
        raise InputError("the parameter schema must map names to their type, default and help.")
    out = []
    for name, spec in schema.items():
        if not isinstance(spec, Mapping):
            raise InputError(f"the schema of parameter {name!r} must be a mapping.")
        secret = spec.get("secret") is True
        out.append(
            Parameter(
                name=name,
                type=str(spec.get("type", "any")),
                default=None if secret else spec.get("default"),
                help=str(spec.get("help") or ""),
                nullable=secret or bool(spec.get("nullable", False)),
                secret=secret,
            )
        )
    return tuple(out)


def cli_value(value: Any) -> str:
    """How a parameter value is spelled on the training job's command line."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def k8s_literal(text: str) -> str:
    """`text` for a container's args or env value, where Kubernetes expands `$(VAR)`: `$` -> `$$`."""
    return text.replace("$", "$$")


def k8s_name(dist_name: str, limit: int = 40) -> str:
    """A DNS-1123 label made from a distribution name (lower case, `-` for `.`/`_`), `limit` long at most."""
    name = re.sub(r"[^a-z0-9-]+", "-", dist_name.lower()).strip("-")[:limit].strip("-")
    if not name or not _DNS_LABEL.match(name):
        raise InputError(f"cannot make a Kubernetes name from {dist_name!r}.")
    return name


def check_schedule(value: object) -> str:
    """A cron schedule as CronJob takes it: five fields, or a macro such as `@daily`."""
    if not isinstance(value, str):
        raise InputError(f"the retraining schedule {value!r} is not a cron expression.")
    fields = value.split(" ")
    if value in _CRON_MACROS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
        return value
    raise InputError(f"the retraining schedule {value!r} is not a cron expression (five fields, e.g. '0 3 * * 1').")


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order (names sorted, values as given)."""
    names = sorted(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(grid[name] for name in names))]
    return points


@dataclass(frozen=True)
class ManifestContext:
    """What the cluster manifests of one build need; validated on creation.

    `grid` maps parameter names to the values a sweep tries (the Indexed Job runs every
    combination); `train_args` are extra arguments for every training run, e.g. an output option.
    """

    dist_name: str
    version: str
    image: str
    parameters: tuple[Parameter, ...] = ()
    schedule: str = "0 3 * * 1"
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    parallelism: int = 2
    runs_claim: str | None = None
    output_flag: str = "--output"
    cpu: str = "1"
    memory: str = "2Gi"
    source_sha256: str = ""
    description: str = ""
    secret_name: str | None = None  # the Kubernetes Secret holding the secret parameters (default NAME-secrets)

    def __post_init__(self) -> None:
        check_dist_name(self.dist_name)
        check_version(self.version)
        check_image_ref(self.image, "the image")
        check_schedule(self.schedule)
        seen: set[str] = set()
        for parameter in self.parameters:
            if not isinstance(parameter, Parameter):
                raise InputError(f"parameters must be Parameter values, not {type(parameter).__name__}.")
            if parameter.name in seen:
                raise InputError(f"the parameter {parameter.name!r} is given twice.")
            seen.add(parameter.name)
            if not parameter.secret:
                parameter.check_value(parameter.default, "the default")
        by_name = {p.name: p for p in self.parameters}
        size = 1
        for name, values in self.grid.items():
            if name not in by_name:
                known = ", ".join(sorted(by_name)) or "none"
                raise InputError(f"the sweep grid names {name!r}, which is not a parameter (known: {known}).")
            if by_name[name].secret:
                raise InputError(f"the sweep grid names {name!r}, a secret parameter, which a sweep cannot vary.")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise InputError(f"the sweep grid for {name!r} must be a non-empty list of values.")
            for value in values:
                by_name[name].check_value(value, f"the sweep grid for {name!r}")
            size *= len(values)
        if size > MAX_SWEEP_POINTS:
            raise InputError(f"the sweep grid has {size} points; at most {MAX_SWEEP_POINTS} are allowed.")
        if isinstance(self.parallelism, bool) or not isinstance(self.parallelism, int) or self.parallelism < 1:
            raise InputError(f"the sweep parallelism {self.parallelism!r} must be a positive integer.")
        if self.runs_claim is not None and not _DNS_LABEL.match(self.runs_claim):
            raise InputError(f"the volume claim name {self.runs_claim!r} is not a DNS-1123 label.")
        for what, quantity in (("cpu", self.cpu), ("memory", self.memory)):
            if not isinstance(quantity, str) or not _QUANTITY.match(quantity):
                raise InputError(f"the {what} request {quantity!r} is not a Kubernetes quantity (e.g. '500m', '2Gi').")
        if self.source_sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.source_sha256):
            raise InputError(f"the source hash {self.source_sha256!r} is not a sha256 hex digest.")
        if not isinstance(self.output_flag, str) or not re.fullmatch(r"--[a-z][a-z0-9-]*", self.output_flag):
            raise InputError(f"the output option {self.output_flag!r} must look like --output.")
        if self.secret_name is not None and not _DNS_SUBDOMAIN.match(self.secret_name):
            raise InputError(f"the Secret name {self.secret_name!r} is not a DNS-1123 subdomain.")
        for parameter in self.parameters:
            if parameter.secret and not _SECRET_KEY.match(parameter.name):
                raise InputError(f"the secret parameter {parameter.name!r} cannot be a key of a Kubernetes Secret.")

    @property
    def secrets(self) -> str:
        """The name of the Kubernetes Secret the secret parameters are read from."""
        return self.secret_name or f"{self.name}-secrets"

    @property
    def name(self) -> str:
        return k8s_name(self.dist_name)

    @property
    def claim(self) -> str:
        return self.runs_claim or f"{self.name}-runs"

    def sweep_points(self) -> list[dict[str, Any]]:
        return expand_grid(self.grid) if self.grid else []


def _metadata(ctx: ManifestContext, name: str, component: str) -> dict[str, Any]:
    annotations = {"nb2prod.io/version": ctx.version, "nb2prod.io/generator": f"nb2prod {__version__}"}
    if ctx.source_sha256:
        annotations["nb2prod.io/source-sha256"] = ctx.source_sha256
    return {"name": name, "labels": _labels(ctx, component), "annotations": annotations}


def _labels(ctx: ManifestContext, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": ctx.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "nb2prod",
    }


def _pod_spec(ctx: ManifestContext, args: list[str], env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "train",
        "image": ctx.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "resources": {"requests": {"cpu": ctx.cpu, "memory": ctx.memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "runs", "mountPath": RUNS_MOUNT}],
    }
    if env:
        container["env"] = env
    return {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
        },
        "containers": [container],
        "volumes": [{"name": "runs", "persistentVolumeClaim": {"claimName": ctx.claim}}],
    }


def secret_env_name(parameter: Parameter) -> str:
    return SECRET_ENV_PREFIX + parameter.name.upper()


def _secret_env(ctx: ManifestContext) -> list[dict[str, Any]]:
    """One env var per secret parameter, from a key of the build's Secret (never a literal)."""
    return [
        {"name": secret_env_name(p), "valueFrom": {"secretKeyRef": {"name": ctx.secrets, "key": p.name}}}
        for p in ctx.parameters
        if p.secret
    ]


def _train_args(ctx: ManifestContext) -> list[str]:
    args = ["train"]
    for parameter in ctx.parameters:
        if parameter.secret:  # read by the job from the env var the Secret fills
            args += [f"--{parameter.name}", f"env:{secret_env_name(parameter)}"]
            continue
        args += [f"--{parameter.name}", k8s_literal(cli_value(parameter.default))]
    # Each run writes its own folder on the runs volume, named after its pod (unique per run).
    return args + [ctx.output_flag, f"{RUNS_MOUNT}/$(RUN_NAME)"]


_RUN_NAME_ENV: dict[str, Any] = {"name": "RUN_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def _job(ctx: ManifestContext, component: str, pod: dict[str, Any]) -> dict[str, Any]:
    return {
        "backoffLimit": 0,  # a failed quality gate is an answer, not a flake: never retry
        "ttlSecondsAfterFinished": 7 * 24 * 3600,
        "template": {"metadata": {"labels": _labels(ctx, component)}, "spec": pod},
    }


def train_job(ctx: ManifestContext) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(ctx, f"{ctx.name}-train", "train"),
        "spec": _job(ctx, "train", _pod_spec(ctx, _train_args(ctx), env=[_RUN_NAME_ENV, *_secret_env(ctx)])),
    }


def retrain_cronjob(ctx: ManifestContext) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(ctx, f"{ctx.name}-retrain", "retrain"),
        "spec": {
            "schedule": ctx.schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": _labels(ctx, "retrain")},
                "spec": _job(ctx, "retrain", _pod_spec(ctx, _train_args(ctx), env=[_RUN_NAME_ENV, *_secret_env(ctx)])),
            },
        },
    }


def sweep_job(ctx: ManifestContext) -> dict[str, Any]:
    points = ctx.sweep_points()
    grid_json = json.dumps(points, sort_keys=True, separators=(",", ":"))
    env: list[dict[str, Any]] = [
        {"name": "NB2PROD_SWEEP_GRID", "value": k8s_literal(grid_json)},
        {"name": "SWEEP_JOB", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}},
        {
            "name": "SWEEP_INDEX",
            "valueFrom": {
                "fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}
            },
        },
        *_secret_env(ctx),  # each point's job reads $NB2PROD_SECRET_<NAME>
    ]
    # The entry point picks grid point $JOB_COMPLETION_INDEX; each point writes its own folder.
    args = ["sweep", ctx.output_flag, f"{RUNS_MOUNT}/$(SWEEP_JOB)/point-$(SWEEP_INDEX)"]
    pod = _pod_spec(ctx, args, env=env)
    spec = {
        "completionMode": "Indexed",
        "completions": len(points),
        "parallelism": min(ctx.parallelism, len(points)),
        # A point that fails (an error or a failed quality gate) must not stop the other points.
        "backoffLimitPerIndex": 0,
        "maxFailedIndexes": len(points),
        **_job(ctx, "sweep", pod),
    }
    del spec["backoffLimit"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(ctx, f"{ctx.name}-sweep", "sweep"),
        "spec": spec,
    }


def kubeflow_component(ctx: ManifestContext) -> dict[str, Any]:
    inputs = []
    args: list[Any] = []
    secrets = [p for p in ctx.parameters if p.secret]
    for parameter in ctx.parameters:
        if parameter.secret:  # not an input: KFP would record its value with the run
            continue
        entry: dict[str, Any] = {
            "name": parameter.name,
            "type": _KFP_TYPES[parameter.type],
            "default": cli_value(parameter.default),
        }
        if parameter.help:
            entry["description"] = parameter.help
        inputs.append(entry)
        args += [f"--{parameter.name}", {"inputValue": parameter.name}]
    args += [ctx.output_flag, {"outputPath": "run"}]
    description = ctx.description or f"Train {ctx.dist_name} {ctx.version} (generated by nb2prod {__version__})."
    annotations = {"nb2prod.io/version": ctx.version, "nb2prod.io/image": ctx.image}
    if secrets:
        annotations["nb2prod.io/secrets"] = ", ".join(
            f"{p.name}: ${secret_env_name(p)} from Secret {ctx.secrets} key {p.name}" for p in secrets
        )
        description += (
            f" Secret parameters ({', '.join(p.name for p in secrets)}) are read from the environment: set them from"
            f" the Secret {ctx.secrets} (kfp.kubernetes.use_secret_as_env)."
        )
    return {
        "name": f"{ctx.dist_name} train",
        "description": description,
        "metadata": {"annotations": annotations},
        "inputs": inputs,
        "outputs": [{"name": "run", "type": "Directory", "description": "The run folder of this training run."}],
        "implementation": {"container": {"image": ctx.image, "command": [*ENTRYPOINT, "train"], "args": args}},
    }


def _dump(document: Mapping[str, Any], header: str) -> str:
    return f"# {escape.one_line(header)}\n{escape.yaml_document(dict(document))}"


def render_manifest_files(ctx: ManifestContext) -> dict[str, str]:
    """The cluster manifests of one build: relative path -> YAML text (deterministic)."""
    generated = f"Generated by nb2prod {__version__} for {ctx.name}; do not edit, rebuild instead."
    files = {
        "k8s/train-job.yaml": _dump(train_job(ctx), generated),
        "k8s/retrain-cronjob.yaml": _dump(retrain_cronjob(ctx), generated),
        "kubeflow/component.yaml": _dump(kubeflow_component(ctx), generated),
    }
    if ctx.grid:
        files["k8s/sweep-job.yaml"] = _dump(sweep_job(ctx), generated)
    return dict(sorted(files.items()))


def parse_grid(specs: Sequence[str], parameters: Sequence[Parameter]) -> dict[str, list[Any]]:
    """`NAME=V1,V2,...` command-line grid entries -> {name: [values]}, typed by the parameters.

    A value is read as JSON when it parses (so `0.1`, `true`, `"a,b"` work) and converted to the
    parameter's type; a string parameter takes the text as it is.
    """
    by_name = {p.name: p for p in parameters}
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, raw = spec.partition("=")
        name = name.strip()
        if not sep or not name or not raw:
            raise InputError(f"the grid entry {spec!r} must look like NAME=VALUE1,VALUE2.")
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise InputError(f"the grid entry {spec!r} names {name!r}, which is not a parameter (known: {known}).")
        parameter = by_name[name]
        grid[name] = [parameter.check_value(value, f"the grid entry {spec!r}") for value in _values(raw, parameter)]
    return grid


def _values(raw: str, parameter: Parameter) -> list[Any]:
    raw = raw.strip()
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"the grid values {raw!r} are not a JSON list ({exc}).") from None
        return [float(v) if parameter.type == "float" and type(v) is int else v for v in parsed]
    return [_convert(part.strip(), parameter) for part in raw.split(",")]


def _convert(text: str, parameter: Parameter) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if parameter.type == "str":
        return value if isinstance(value, str) else text
    if parameter.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def render_build_manifests(
    *,
    dist_name: str,
    version: str,
    parameter_schema: Mapping[str, Mapping[str, Any]],
    source_sha256: str = "",
    image: str | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    schedule: str | None = None,
    secret_name: str | None = None,
) -> dict[str, str]:
    """The manifests of a build, for the renderer: `render_manifest_files` with the build's values.

    `parameter_schema` is nb2prod.json's `parameters` mapping; `image` defaults to NAME:VERSION.
    """
    from nb2prod.deploy.image import default_tag

    ctx = ManifestContext(
        dist_name=dist_name,
        version=version,
        image=image or default_tag(dist_name, version),
        parameters=parameters_from_schema(parameter_schema),
        schedule=schedule or "0 3 * * 1",
        grid=dict(grid or {}),
        source_sha256=source_sha256,
        secret_name=secret_name,
    )
    return render_manifest_files(ctx)
