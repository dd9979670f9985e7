"""`nb2prod train`: validate parameters, execute the job, and record an immutable run."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from nb2prod import __version__
from nb2prod.errors import InputError
from nb2prod.runs.aliases import current_user
from nb2prod.runs.build import MANIFEST as BUILD_MANIFEST
from nb2prod.runs.build import BuildInfo, locate_build
from nb2prod.runs.collect import REPORT
from nb2prod.runs.contract import find_fit_call, to_jsonable
from nb2prod.runs.engines import JobSpec, run_papermill, run_python
from nb2prod.runs.hashing import sha256_file, sha256_tree
from nb2prod.runs.ids import utc_now_iso
from nb2prod.runs.params import resolve_params
from nb2prod.runs.provenance import data_inputs, git_info, installed_pins, platform_name, python_version
from nb2prod.runs.record import (
    ERRORED,
    SUCCEEDED,
    CellRef,
    Contract,
    Failure,
    ModelArtifact,
    RunManifest,
    Source,
    Timings,
    record_from_dict,
)
from nb2prod.runs.store import RunStore, StoredRun, file_digests, write_json

ENGINES = ("papermill", "python")
DEFAULT_STORE = "runs"


@dataclass(frozen=True)
class TrainRequest:
    build: BuildInfo
    params: dict[str, Any]
    overrides: tuple[str, ...]
    engine: str
    store: RunStore
    model_format: str = "auto"


def default_store(build: BuildInfo, signing_key: bytes | None = None) -> RunStore:
    """`runs/` beside the notebook (beside the build when the notebook is unknown)."""
    base = build.notebook.parent if build.notebook is not None else build.build_dir.parent
    return RunStore(base / DEFAULT_STORE, signing_key=signing_key)


def contract_expression(build: BuildInfo) -> str | None:
    """Config `contract_variable`, else the data argument of the model's `fit(...)` call in the job."""
    explicit = (
        build.raw.get("config", {}).get("contract_variable") if isinstance(build.raw.get("config"), dict) else None
    )
    if explicit:
        return str(explicit)
    nb = json.loads(build.job_notebook.read_text(encoding="utf-8"))  # plain JSON: nbformat imports slowly
    sources = [
        "".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", ""))
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    call = find_fit_call(sources, build.model_variable)
    if call is not None:
        return call.expression
    return build.contract_expression


def prepare(
    target: Path,
    pairs: list[tuple[str, str]],
    files: list[Path],
    engine: str = "papermill",
    store: Path | None = None,
    model_format: str = "auto",
    signing_key: bytes | None = None,
) -> TrainRequest:
    """Everything that can be refused is refused here, before any kernel starts."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: use papermill or python.")
    build = locate_build(target)
    params, overrides = resolve_params(build.parameters, pairs, files)
    run_store = RunStore(store, signing_key=signing_key) if store is not None else default_store(build, signing_key)
    run_store.signing_key  # noqa: B018 - a configured key file that cannot be read is refused before the job runs
    return TrainRequest(build, params, overrides, engine, run_store, model_format)


def train_target(
    target: Path,
    pairs: list[tuple[str, str]] = [],  # noqa: B006 - never mutated
    files: list[Path] = [],  # noqa: B006
    engine: str = "papermill",
    store: Path | None = None,
    model_format: str = "auto",
    signing_key: bytes | None = None,
) -> StoredRun:
    """Train into a new run; `signing_key` (default: from the environment) signs its run.json."""
    return execute(prepare(target, pairs, files, engine, store, model_format, signing_key))


def execute(request: TrainRequest) -> StoredRun:
    """Run the job into a staging folder and rename it into the store; the run is always recorded."""
    started_at = utc_now_iso()
    t0 = time.perf_counter()
    build = request.build
    spec = JobSpec(
        package=build.package,
        src_dir=build.src_dir,
        job_notebook=build.job_notebook,
        workdir=build.workdir,
        model_variable=build.model_variable,
        contract_expression=contract_expression(build),
        model_format=request.model_format,
        inputs_expression=build.example_inputs,
        cell_roles=build.cell_roles,
        notebook_name=build.notebook.name if build.notebook else None,
    )
    try:
        run_id, folder = request.store.staging_dir()
    except OSError as exc:
        raise InputError(f"cannot write runs into {request.store.root} ({exc.strerror or exc}).") from None
    try:
        data = data_inputs(request.params, build.workdir)  # before the job: what it read, not what it wrote
        git = git_info(build.workdir)
        t_engine = time.perf_counter()
        runner = run_papermill if request.engine == "papermill" else run_python
        outcome = runner(spec, request.params, folder)
        execute_s = time.perf_counter() - t_engine

        report = _read_report(folder)
        status, failure = outcome.status, outcome.failure
        model = record_from_dict(ModelArtifact, report["model"]) if report.get("model") else None
        if status == SUCCEEDED and model is None:
            status = ERRORED
            problem = next((p for p in report.get("problems", []) if "model variable" in p), None)
            failure = Failure(
                "MissingModel",
                problem or f"the job bound no model variable {build.model_variable!r}",
                CellRef(role="train"),
            )
        metrics = report.get("metrics") or {}
        contract = record_from_dict(Contract, report["contract"]) if report.get("contract") else None
        predict_inputs = record_from_dict(Contract, report["predict_inputs"]) if report.get("predict_inputs") else None

        write_json(folder / "params.json", to_jsonable(request.params))
        write_json(folder / "metrics.json", metrics)
        if contract is not None or predict_inputs is not None:
            write_json(
                folder / "contract.json",
                {
                    "fit": report.get("contract"),
                    "predict_inputs": report.get("predict_inputs"),
                    "problems": report.get("problems", []),
                },
            )
        pins = installed_pins()
        (folder / "environment.txt").write_text("".join(f"{pin}\n" for pin in pins))
        code_sha = _snapshot_code(build, folder / "code")
        gates, gate_notes = resolve_gates(build.raw.get("gates") or (), to_jsonable(request.params))
        finished_at = utc_now_iso()
        total_s = time.perf_counter() - t0
        manifest = RunManifest(
            run_id=run_id,
            status=status,
            engine=request.engine,
            source=Source(
                name=build.name,
                package=build.package,
                build_dir=str(build.build_dir),
                notebook=str(build.notebook) if build.notebook else None,
                notebook_sha256=build.notebook_sha256
                or (sha256_file(build.notebook) if build.notebook and build.notebook.is_file() else None),
                code_sha256=code_sha,
                nb2prod_version=__version__,
            ),
            params=to_jsonable(request.params),
            overrides=request.overrides,
            metrics=metrics,
            model=model,
            data=data,
            git=git,
            python=python_version(),
            platform=platform_name(),
            pins=pins,
            timings=Timings(
                started_at=started_at,
                finished_at=finished_at,
                total_s=round(total_s, 4),
                execute_s=round(execute_s, 4),
                bookkeeping_s=round(max(total_s - execute_s, 0.0), 4),
                cells_s=round(outcome.cells_s, 4) if outcome.cells_s is not None else None,
                collect_s=round(outcome.collect_s, 4) if outcome.collect_s is not None else None,
            ),
            contract=contract,
            failure=failure,
            user=current_user(),
            host=current_user().split("@", 1)[-1],
            files=file_digests(folder),
            predict_inputs=predict_inputs,
            gates=gates,
            notes=tuple(str(p) for p in report.get("problems", [])) + gate_notes,
        )
        return request.store.commit(folder, manifest)
    except BaseException:
        request.store.discard(folder)
        raise


def _read_report(folder: Path) -> dict[str, Any]:
    path = folder / REPORT
    if not path.is_file():
        return {"problems": ["the job stopped before its model and metrics were collected"]}
    data = json.loads(path.read_text())
    path.unlink()
    return data


def _snapshot_code(build: BuildInfo, target: Path) -> str:
    """Copy the build's src/ and nb2prod.json into the run; return the digest of the copy."""
    target.mkdir(parents=True)
    shutil.copytree(build.src_dir, target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copy2(build.build_dir / BUILD_MANIFEST, target / BUILD_MANIFEST)
    return sha256_tree(target).sha256


def resolve_gates(
    gates: Iterable[dict[str, Any]], params: dict[str, Any]
) -> tuple[tuple[dict[str, Any], ...], tuple[str, ...]]:
    """Build-time gates with each parameter replaced by the run's value; notes for those whose
    parameter has no numeric value in the run."""
    resolved: list[dict[str, Any]] = []
    notes: list[str] = []
    for gate in gates:
        if not isinstance(gate, dict) or not {"metric", "op"} <= set(gate):
            continue
        entry: dict[str, Any] = {k: gate[k] for k in ("metric", "op", "cell", "line") if k in gate}
        value = gate.get("value")
        if gate.get("parameter"):
            entry["parameter"] = gate["parameter"]
            value = params.get(str(gate["parameter"]))
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            notes.append(
                f"quality gate {gate['metric']} {gate['op']} {gate.get('parameter') or value!r} is not recorded: "
                f"its threshold is not a number in this run"
            )
            continue
        entry["value"] = float(value)
        resolved.append(entry)
    return tuple(resolved), tuple(notes)
