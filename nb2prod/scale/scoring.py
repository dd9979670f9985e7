"""`score`: a run's model over a large input, in chunks, on an engine; parquet parts out.

The driver reads the input in chunks and hands each chunk to the engine; a worker checks the
chunk's rows against the run's input contract, runs the package's own predict on the good rows
and writes one parquet part. Every output row keeps the input's id (the --id-column value, else
its 1-based row number) and names the run and model that scored it. The run is resolved once, on
the driver: an alias promoted during the job does not mix two models in one output.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from nb2prod import __version__
from nb2prod.errors import InputError
from nb2prod.runs.ids import utc_now_iso
from nb2prod.runs.store import RunStore
from nb2prod.scale import output as out
from nb2prod.scale.checking import BadRow
from nb2prod.scale.engine import open_engine
from nb2prod.scale.reading import Chunk, describe_input, input_sha256, iter_chunks

DEFAULT_CHUNK_ROWS = 100_000
ROW_COLUMN = "row"
OUTPUT_COLUMNS = ("prediction", "run_id", "model_sha256")


@dataclass(frozen=True)
class Job:
    """What every chunk of one scoring job shares; small, sent with each task."""

    store: str
    run_id: str
    model_sha256: str
    folder: str  # the hidden output folder the parts go to
    id_column: str | None
    keep_bad_rows: bool  # False: the first bad row fails the job
    source: str  # INPUT as the user named it, for messages


@dataclass(frozen=True)
class ChunkTask:
    job: Job
    index: int
    first_row: int
    data: bytes | None  # the chunk as an Arrow IPC stream (CSV, parquet), for workers in other processes
    records: tuple[dict[str, Any], ...] | None  # or its JSON objects (JSON lines)
    rows: int
    table: Any = None  # or the pyarrow Table itself, for the local engine (nothing to serialise)


@dataclass(frozen=True)
class ChunkResult:
    index: int
    rows: int
    scored: int
    part: str | None
    bad_rows: tuple[BadRow, ...]
    warnings: tuple[tuple[str, str, int], ...]
    model_sha256: str | None
    worker: str
    load_s: float  # time this worker spent loading and verifying the model (0 after its first chunk)
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class ScoreResult:
    output: Path
    run_id: str
    alias: str | None
    model_sha256: str
    code_sha256: str
    input_sha256: str
    input_format: str
    engine: str
    workers: int
    rows: int
    scored: int
    bad_rows: int
    bad_rows_file: Path | None
    parts: tuple[str, ...]
    warnings: tuple[tuple[str, str, int], ...]  # (field, rule, count): outside the training range, unseen category
    model_loads: int  # distinct workers that loaded and verified the model
    model_load_s: float  # the longest a worker took to load and verify it (part of score_s)
    startup_s: float
    score_s: float
    total_s: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.score_s if self.score_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("manifest")
        data["output"] = str(self.output)
        data["bad_rows_file"] = str(self.bad_rows_file) if self.bad_rows_file else None
        data["warnings"] = [list(w) for w in self.warnings]
        data["parts"] = list(self.parts)
        data["rows_per_s"] = round(self.rows_per_s, 1)
        return data

    def summary(self) -> str:
        bad = f", {self.bad_rows:,} bad row(s) in {self.bad_rows_file}" if self.bad_rows_file else ""
        return (
            f"scored {self.scored:,} of {self.rows:,} rows{bad} with run {self.run_id} "
            f"(model sha256 {self.model_sha256[:12]}) on {self.engine} ({self.workers} worker(s)) in "
            f"{self.score_s:.1f}s, {self.rows_per_s:,.0f} rows/s (start-up {self.startup_s:.1f}s) -> {self.output}"
        )


# --- worker side -------------------------------------------------------------------------------
# (store, run id, job) -> LoadedRun: each worker loads and verifies the model once per job, and
# holds only the latest job's model (a worker process lives on between jobs of a shared cluster).
_LOADED: dict[tuple[str, str, str], Any] = {}


def _loaded_run(job: Job) -> tuple[Any, float]:
    key = (job.store, job.run_id, job.folder)
    if key in _LOADED:
        return _LOADED[key], 0.0
    from nb2prod.runs.predicting import load_run

    started = time.perf_counter()
    _LOADED.clear()
    loaded = load_run(RunStore(job.store), job.run_id)
    _LOADED[key] = loaded
    return loaded, time.perf_counter() - started


def score_chunk(task: ChunkTask) -> ChunkResult:
    """Check, predict and write one chunk; problems come back as data (`error`), never raised."""
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    job = task.job
    try:
        loaded, load_s = _loaded_run(task.job)
    except Exception as exc:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        return ChunkResult(
            task.index, task.rows, 0, None, (), (), None, worker, 0.0, 0.0, f"run {job.run_id}: {message}"
        )
    sha = loaded.run.manifest.model.sha256
    try:
        scored, part, bad, warnings = _score(loaded, task)
    except InputError as exc:
        return ChunkResult(task.index, task.rows, 0, None, (), (), sha, worker, load_s, 0.0, exc.message)
    except Exception as exc:  # an unexpected failure still comes back as one sentence
        return ChunkResult(
            task.index, task.rows, 0, None, (), (), sha, worker, load_s, 0.0, f"{type(exc).__name__}: {exc}"
        )
    return ChunkResult(
        task.index,
        task.rows,
        scored,
        part,
        tuple(bad),
        tuple((f, r, n) for (f, r), n in sorted(warnings.items())),
        sha,
        worker,
        round(load_s, 4),
        round(time.perf_counter() - started, 4),
    )


def _frame(task: ChunkTask, contract: Any | None) -> Any:
    import pandas as pd

    if task.records is not None:
        return pd.DataFrame.from_records(list(task.records))
    import pyarrow as pa

    table = task.table if task.table is not None else pa.ipc.open_stream(task.data).read_all()
    return _numbers_from_csv_text(table, contract).to_pandas()


def _numbers_from_csv_text(table: Any, contract: Any | None) -> Any:
    """CSV text columns (read as text, see reading.py) cast to numbers in one vectorised step where
    every value reads as one; a column with a value that does not stays text for the row checks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if contract is None:
        return table
    for item in contract.fields:
        if item.kind not in ("int", "float") or item.name not in table.column_names:
            continue
        index = table.column_names.index(item.name)
        column = table.column(index)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        for target in (pa.int64(), pa.float64()) if item.kind == "int" else (pa.float64(),):
            try:
                table = table.set_column(index, item.name, pc.cast(column, target))
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
    return table


def contract_of(manifest: Any) -> Any | None:
    """The input contract a run's predict is held to (what the notebook fed predict, else what fit saw)."""
    from nb2prod.runs.contract import as_input_contract

    recorded = manifest.predict_inputs or manifest.contract
    if recorded is None or not recorded.features:
        return None
    return as_input_contract(recorded)


def _score(loaded: Any, task: ChunkTask) -> tuple[int, str | None, list[BadRow], Counter[tuple[str, str]]]:
    import numpy as np
    import pyarrow as pa

    from nb2prod.scale.checking import check_frame, numbers_from_text

    job = task.job
    contract = contract_of(loaded.run.manifest)
    frame = _frame(task, contract)
    if job.id_column is not None and job.id_column not in frame.columns:
        raise InputError(
            f"{job.source}: the id column {job.id_column!r} is not in the input (its columns: {', '.join(map(str, frame.columns))})."
        )
    ids = frame[job.id_column].tolist() if job.id_column else None
    bad: list[BadRow] = []
    warnings: Counter[tuple[str, str]] = Counter()
    if contract is not None:
        frame = numbers_from_text(frame, contract)
        positions, bad, warnings = check_frame(frame, contract, task.first_row, ids)
        if bad and not job.keep_bad_rows:
            raise InputError(
                f"{bad[0].describe(job.source)}; fix the row, or pass --bad-rows FILE to set bad rows aside and score the rest"
            )
        keep = np.ones(len(frame), dtype=bool)
        keep[positions] = False
        inputs = frame[[f.name for f in contract.fields]][keep].reset_index(drop=True)
    else:
        keep = np.ones(len(frame), dtype=bool)
        inputs = frame.drop(columns=[job.id_column]) if job.id_column else frame
    if job.id_column:
        id_values = pa.array([v for v, k in zip(ids or [], keep) if k]) if not keep.all() else pa.array(ids or [])
        id_name = job.id_column
    else:
        id_values = pa.array(np.arange(task.first_row, task.first_row + len(frame), dtype="int64")[keep])
        id_name = ROW_COLUMN
    predictions = _predict(loaded, inputs, job.source, task.first_row) if len(inputs) else []
    values = _prediction_array(predictions)
    n = len(values)
    same = pa.array(np.zeros(n, dtype="int32"))  # one dictionary entry repeated: cheap in memory and on disk
    table = pa.table(
        {
            id_name: id_values,
            "prediction": values,
            "run_id": pa.DictionaryArray.from_arrays(same, pa.array([job.run_id], pa.string())),
            "model_sha256": pa.DictionaryArray.from_arrays(
                same, pa.array([loaded.run.manifest.model.sha256], pa.string())
            ),
        }
    )
    part = out.write_part(Path(job.folder), task.index, table)
    return n, part, bad, warnings


def _predict(loaded: Any, inputs: Any, source: str, first_row: int) -> list[Any]:
    """The package's predict on a DataFrame of the contract's columns, shaped as `nb2prod predict` shapes rows."""
    from nb2prod.runs.contract import to_jsonable

    if not loaded.custom_predict:
        return loaded.predict_rows(inputs.to_dict(orient="records"), source)
    examples = loaded.run.manifest.predict_inputs
    if examples is not None and examples.kind == "dataframe":
        for feature in examples.features:
            if feature.name in inputs.columns and str(inputs[feature.name].dtype) != feature.dtype:
                try:
                    inputs[feature.name] = inputs[feature.name].astype(feature.dtype)
                except (TypeError, ValueError) as exc:
                    raise InputError(
                        f"{source}: column {feature.name!r} cannot be read as {feature.dtype} ({exc})."
                    ) from None
    try:
        result = loaded.predict_function(loaded.model, inputs)
    except Exception as exc:
        raise InputError(
            f"{source}: predict of run {loaded.run.run_id} failed on the chunk from row {first_row} "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if type(result).__module__.startswith("numpy") and getattr(result, "ndim", 0) == 1:
        values = result.tolist()
    else:
        values = result if isinstance(result, list) else list(to_jsonable(result))
    if len(values) != len(inputs):
        raise InputError(
            f"predict of run {loaded.run.run_id} returned {len(values)} values for {len(inputs)} input rows."
        )
    return values


def _prediction_array(values: list[Any]) -> Any:
    import json

    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed or nested results: one JSON text per row
        return pa.array([json.dumps(v, default=str) for v in values], pa.string())


# --- driver side -------------------------------------------------------------------------------
def _tasks(job: Job, chunks: Any, progress: Callable[[Chunk], None], in_process: bool) -> Any:
    import pyarrow as pa

    for index, chunk in enumerate(chunks):
        progress(chunk)
        data = None
        if in_process:
            yield ChunkTask(job, index, chunk.first_row, None, chunk.records, chunk.rows, chunk.table)
            continue
        if chunk.table is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, chunk.table.schema) as writer:
                writer.write_table(chunk.table)
            data = sink.getvalue().to_pybytes()
        yield ChunkTask(job, index, chunk.first_row, data, chunk.records, chunk.rows)


def score(
    ref: str,
    input_path: Path | str,
    output: Path | str,
    *,
    store: RunStore | Path | str,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    id_column: str | None = None,
    bad_rows: Path | str | None = None,
    input_format: str = "auto",
    progress: Any = None,
) -> ScoreResult:
    """Score INPUT with the model of the run `ref` names (run id, prefix or alias) into the folder OUTPUT.

    OUTPUT appears complete (parquet parts, `_manifest.json`, `_SUCCESS`) or not at all. Raises
    InputError for bad input: a bad row (naming its number and rule) unless `bad_rows` names a
    JSON-lines file to set such rows aside in. `progress` receives (rows done, rows total or None,
    rows read) as chunks complete.
    """
    t0 = time.perf_counter()
    started_at = utc_now_iso()
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows must be a positive number of rows, not {chunk_rows}.")
    try:
        import pandas  # noqa: F401  - chunks reach predict as DataFrames
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"nb2prod score needs pandas and pyarrow ({exc.name} is missing): pip install pandas pyarrow"
        ) from None
    run_store = store if isinstance(store, RunStore) else RunStore(store)
    output = Path(output).absolute()
    input_path = Path(input_path)
    bad_path = Path(bad_rows).absolute() if bad_rows is not None else None
    if bad_path is not None and (bad_path.exists() or bad_path.is_symlink()):
        raise InputError(f"{bad_path} already exists: nb2prod never overwrites a file; choose a new --bad-rows FILE.")
    run = run_store.get(ref)
    manifest = run.manifest
    if manifest.model is None:
        raise InputError(f"run {run.run_id} has no model to score with (its status is {manifest.status}).")
    alias = ref if ref != run.run_id and not run.run_id.startswith(ref) else None
    spec = describe_input(input_path, input_format)
    digest = input_sha256(spec)
    contract = contract_of(manifest)
    text_columns = tuple(f.name for f in contract.fields if f.kind in ("int", "float")) if contract else ()

    folder = out.prepare_output(output)
    job = Job(
        str(run_store.root),
        run.run_id,
        manifest.model.sha256,
        str(folder),
        id_column,
        bad_path is not None,
        str(input_path),
    )
    runner = None
    try:
        runner = open_engine(engine, address, workers)
        read = {"rows": 0, "bytes": 0}

        def on_read(chunk: Chunk) -> None:
            read["rows"] += chunk.rows
            read["bytes"] = chunk.bytes_read

        t_score = time.perf_counter()
        results: list[ChunkResult] = []
        done = 0
        for result in runner.map_chunks(
            score_chunk, _tasks(job, iter_chunks(spec, chunk_rows, text_columns), on_read, runner.in_process)
        ):
            if result.error is not None:
                raise InputError(result.error)
            if result.model_sha256 != manifest.model.sha256:
                raise InputError(
                    f"worker {result.worker} scored with model sha256 {result.model_sha256}, not the recorded "
                    f"{manifest.model.sha256} of run {run.run_id}."
                )
            results.append(result)
            done += result.rows
            if progress is not None:
                total = spec.total_rows
                if total is None and read["bytes"]:
                    total = max(read["rows"], int(read["rows"] * spec.size_bytes / read["bytes"]))
                progress(done, total, spec.total_rows is not None)
        score_s = time.perf_counter() - t_score
        results.sort(key=lambda r: r.index)
        bad = [b for r in results for b in r.bad_rows]
        warnings: Counter[tuple[str, str]] = Counter()
        for r in results:
            for f, rule, n in r.warnings:
                warnings[(f, rule)] += n
        rows = sum(r.rows for r in results)
        scored = sum(r.scored for r in results)
        loads = {r.worker for r in results if r.load_s > 0}
        chunks_by_worker = Counter(r.worker for r in results)
        total_s = time.perf_counter() - t0
        record: dict[str, Any] = {
            "nb2prod_version": __version__,
            "run_id": run.run_id,
            "alias": alias,
            "model_sha256": manifest.model.sha256,
            "code_sha256": manifest.source.code_sha256,
            "input": {
                "path": str(input_path.absolute()),
                "format": spec.format,
                "files": len(spec.files),
                "bytes": spec.size_bytes,
                "sha256": digest,
            },
            "rows": rows,
            "scored": scored,
            "bad_rows": len(bad),
            "bad_rows_file": str(bad_path) if bad_path else None,
            "warnings": [{"field": f, "rule": r, "rows": n} for (f, r), n in sorted(warnings.items())],
            "id_column": id_column or ROW_COLUMN,
            "columns": [id_column or ROW_COLUMN, *OUTPUT_COLUMNS],
            "parts": [r.part for r in results if r.part],
            "engine": runner.name,
            "engine_address": runner.address,
            "workers": runner.workers,
            "model_loads": len(loads),
            "chunks_by_worker": dict(sorted(chunks_by_worker.items())),
            "chunk_rows": chunk_rows,
            "timings": {
                "started_at": started_at,
                "finished_at": utc_now_iso(),
                "startup_s": round(runner.startup_s, 4),
                "model_load_s": round(max((r.load_s for r in results), default=0.0), 4),
                "score_s": round(score_s, 4),
                "total_s": round(total_s, 4),
            },
        }
        if bad_path is not None:
            _write_bad_rows(bad_path, bad)
        out.finish_output(folder, output, record)
    except BaseException:
        out.discard_output(folder)
        raise
    finally:
        if runner is not None:
            runner.close()
    return ScoreResult(
        output=output,
        run_id=run.run_id,
        alias=alias,
        model_sha256=manifest.model.sha256,
        code_sha256=manifest.source.code_sha256,
        input_sha256=digest,
        input_format=spec.format,
        engine=runner.name,
        workers=runner.workers,
        rows=rows,
        scored=scored,
        bad_rows=len(bad),
        bad_rows_file=bad_path,
        parts=tuple(record["parts"]),
        warnings=tuple((f, r, n) for (f, r), n in sorted(warnings.items())),
        model_loads=len(loads),
        model_load_s=record["timings"]["model_load_s"],
        startup_s=round(runner.startup_s, 4),
        score_s=round(score_s, 4),
        total_s=round(time.perf_counter() - t0, 4),
        manifest=record,
    )


def _write_bad_rows(path: Path, bad: list[BadRow]) -> None:
    """JSON lines, one bad row each (row, id, field, rule, message, every violation, the record); atomic."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.writing-{os.getpid()}")
    with open(temporary, "w", encoding="utf-8") as handle:
        for row in bad:
            handle.write(json.dumps(row.to_dict(), sort_keys=True, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        temporary.unlink()
        raise InputError(f"{path} appeared while scoring: nb2prod never overwrites a file.")
    os.replace(temporary, path)
