"""The run record (`run.json`): one frozen record tying a run folder together."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MANIFEST_VERSION = 1
SUCCEEDED = "succeeded"
FAILED_GATE = "failed-gate"
ERRORED = "errored"
STATUSES = (SUCCEEDED, FAILED_GATE, ERRORED)


@dataclass(frozen=True)
class CellRef:
    """Where a failure happened: the job cell, and the notebook cell it came from when known."""

    job_cell: int | None = None  # 0-based index in job/train.ipynb
    cell_id: str | None = None
    role: str | None = None
    notebook: str | None = None
    notebook_cell: int | None = None  # 0-based index in the source notebook
    line: int | None = None

    def describe(self) -> str:
        if self.notebook_cell is not None:
            text = f"{self.notebook or 'notebook'}: cell {self.notebook_cell + 1}"
        elif self.job_cell is not None:
            text = f"job cell {self.job_cell + 1}"
        else:
            return "the training job"
        extra = [p for p in (f"id {self.cell_id}" if self.cell_id else None, self.role) if p]
        if extra:
            text += f" ({', '.join(extra)})"
        if self.line is not None:
            text += f", line {self.line}"
        return text


@dataclass(frozen=True)
class Failure:
    error_type: str
    message: str
    cell: CellRef | None = None
    traceback: str = ""

    def describe(self) -> str:
        where = self.cell.describe() if self.cell else "the training job"
        return f"{where}: {self.error_type}: {self.message}".rstrip(": ")


@dataclass(frozen=True)
class ModelArtifact:
    file: str  # relative to the run folder
    format: str  # "skops" | "joblib"
    sha256: str
    size: int
    variable: str
    type: str  # fully qualified class name of the model
    trusted_types: tuple[str, ...] = ()  # skops: the non-default types accepted on load


@dataclass(frozen=True)
class DataInput:
    parameter: str
    path: str  # as given, relative to the notebook folder when it was relative
    kind: str  # "file" | "dir"
    sha256: str
    size: int
    files: int


@dataclass(frozen=True)
class GitInfo:
    root: str
    commit: str | None
    dirty: bool
    branch: str | None = None


@dataclass(frozen=True)
class Feature:
    """One input field: its dtype, and what training saw of it (None where not recorded)."""

    name: str
    dtype: str
    kind: str | None = None  # JSON kind: int | float | bool | str | datetime | any
    nullable: bool | None = None  # training saw missing values
    min: float | None = None  # numeric fields: smallest and largest value seen
    max: float | None = None
    categories: tuple[Any, ...] | None = None  # low-cardinality fields: every value seen, sorted


@dataclass(frozen=True)
class Contract:
    """What the model was fitted on: the first argument of its `fit(...)` call."""

    expression: str  # e.g. "X_train"
    kind: str  # "dataframe" | "series" | "ndarray" | "sequence"
    features: tuple[Feature, ...]
    n_rows: int | None
    examples: tuple[dict[str, Any], ...] = ()
    stats_expression: str | None = None  # what ranges and categories were taken from (n_rows is its size)


@dataclass(frozen=True)
class Timings:
    started_at: str
    finished_at: str
    total_s: float
    execute_s: float  # the engine: kernel start, cells, collection
    bookkeeping_s: float  # validation, hashing, provenance, writing the run folder
    cells_s: float | None = None  # sum of cell execution times reported by the kernel
    collect_s: float | None = None  # saving model, metrics and contract (part of execute_s)


@dataclass(frozen=True)
class Source:
    """The build the run came from."""

    name: str
    package: str
    build_dir: str
    notebook: str | None
    notebook_sha256: str | None
    code_sha256: str  # digest of the build's code snapshot stored in the run (code/)
    nb2prod_version: str


@dataclass(frozen=True)
class RunManifest:
    run_id: str
    status: str
    engine: str
    source: Source
    params: dict[str, Any]
    overrides: tuple[str, ...]
    metrics: dict[str, Any]
    model: ModelArtifact | None
    data: tuple[DataInput, ...]
    git: GitInfo | None
    python: str
    platform: str
    pins: tuple[str, ...]
    timings: Timings
    contract: Contract | None  # what the model's fit(...) was called with
    failure: Failure | None
    user: str
    host: str
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256 (all but run.json)
    predict_inputs: Contract | None = None  # example rows predict was fed in the notebook (example_inputs)
    gates: tuple[dict[str, Any], ...] = ()  # the build's quality gates, thresholds resolved: {metric, op, value, ...}
    notes: tuple[str, ...] = ()  # what could not be recorded, e.g. no fit(...) call to take a contract from
    manifest_version: int = MANIFEST_VERSION

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunManifest":
        return record_from_dict(cls, data)

    @classmethod
    def read(cls, path: Path) -> "RunManifest":
        return cls.from_dict(json.loads(path.read_text()))


_NESTED: dict[tuple[type, str], type] = {
    (RunManifest, "source"): Source,
    (RunManifest, "model"): ModelArtifact,
    (RunManifest, "git"): GitInfo,
    (RunManifest, "timings"): Timings,
    (RunManifest, "contract"): Contract,
    (RunManifest, "predict_inputs"): Contract,
    (RunManifest, "failure"): Failure,
    (Failure, "cell"): CellRef,
}
_NESTED_SEQ: dict[tuple[type, str], type] = {
    (RunManifest, "data"): DataInput,
    (Contract, "features"): Feature,
}


def record_from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in known:
            continue  # written by a newer nb2prod: ignore rather than fail
        if value is not None and (cls, name) in _NESTED:
            value = record_from_dict(_NESTED[(cls, name)], value)
        elif (cls, name) in _NESTED_SEQ:
            value = tuple(record_from_dict(_NESTED_SEQ[(cls, name)], item) for item in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
