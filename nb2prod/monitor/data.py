"""Rows to judge, read in chunks: CSV, parquet (a file or a folder of parts), JSON lines, or a
server's prediction log folder (read with the server's own reader, `nb2prod.serve.read_prediction_log`)."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.parquet_chunks import parquet_tables

CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class Chunk:
    inputs: Any  # pandas DataFrame of input columns
    score: Any = None  # pandas Series of the model's outputs, when the data has them


def _is_log_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("predictions-*.jsonl")) and not any(path.glob("*.parquet"))


def detect_format(path: Path) -> str:
    if _is_log_folder(path):
        return "log"
    if path.is_dir():
        if any(path.glob("*.parquet")):
            return "parquet"
        raise InputError(f"{path}: a folder without parquet parts or prediction-log files (*.jsonl)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise InputError(f"{path}: unknown data format (use .csv, .parquet, .jsonl or a prediction-log folder)")


def read_chunks(
    path: Path, *, chunk_rows: int = CHUNK_ROWS, since: str | None = None, window: int | None = None
) -> Iterator[Chunk]:
    """Chunks of rows from `path`; `since` (ISO time) and `window` (the last N rows) apply to logs,
    `window` also to files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    fmt = detect_format(path)
    if since is not None and fmt != "log":
        raise InputError("--since applies to a prediction-log folder, whose records carry their time")
    if fmt == "log":  # the log's reader applies since and window itself
        yield from _log_chunks(path, chunk_rows, since, window)
        return
    if fmt == "csv":
        chunks: Iterator[Chunk] = _csv_chunks(path, chunk_rows)
    elif fmt == "parquet":
        chunks = _parquet_chunks(path, chunk_rows)
    else:
        chunks = _jsonl_chunks(path, chunk_rows)
    if window is None:
        yield from chunks
    else:
        yield from _last_rows(chunks, window)


def _last_rows(chunks: Iterator[Chunk], window: int) -> Iterator[Chunk]:
    import pandas as pd

    kept: deque[Chunk] = deque()
    rows = 0
    for chunk in chunks:
        kept.append(chunk)
        rows += len(chunk.inputs)
        while kept and rows - len(kept[0].inputs) >= window:
            rows -= len(kept.popleft().inputs)
    if not kept:
        return
    inputs = pd.concat([c.inputs for c in kept], ignore_index=True).iloc[-window:]
    scores = [c.score for c in kept]
    score = pd.concat(scores, ignore_index=True).iloc[-window:] if all(s is not None for s in scores) else None
    yield Chunk(inputs.reset_index(drop=True), score.reset_index(drop=True) if score is not None else None)


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow.csv as pacsv

    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20))
        for batch in reader:
            yield from _split(batch.to_pandas(), chunk_rows)
    except Exception as exc:  # pyarrow.ArrowInvalid and friends
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
        except Exception as exc:
            raise InputError(f"{file}: not a readable parquet file ({exc})") from None
        for table in parquet_tables(parquet, chunk_rows):
            yield Chunk(table.to_pandas())


def _split(frame: Any, chunk_rows: int) -> Iterator[Chunk]:
    for start in range(0, len(frame), chunk_rows):
        yield Chunk(frame.iloc[start : start + chunk_rows])


def _jsonl_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    import pandas as pd

    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise InputError(f"{path}, line {number}: not valid JSON") from None
            if not isinstance(row, dict):
                raise InputError(f"{path}, line {number}: a row must be a JSON object of input columns")
            rows.append(row)
            if len(rows) >= chunk_rows:
                yield Chunk(pd.DataFrame.from_records(rows))
                rows = []
    if rows:
        yield Chunk(pd.DataFrame.from_records(rows))


def _log_chunks(folder: Path, chunk_rows: int, since: str | None, window: int | None) -> Iterator[Chunk]:
    import pandas as pd

    from nb2prod.serve import read_prediction_log

    inputs: list[dict[str, Any]] = []
    outputs: list[Any] = []
    try:
        records = read_prediction_log(folder, since=since, window=window)
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("inputs"), dict):
                raise InputError(f"{folder}: a record without an inputs object is not a prediction-log record")
            inputs.append(record["inputs"])
            outputs.append(_score_of(record.get("output")))
            if len(inputs) >= chunk_rows:
                yield Chunk(pd.DataFrame.from_records(inputs), pd.Series(outputs, name="score"))
                inputs, outputs = [], []
    except ValueError as exc:  # an unreadable --since
        raise InputError(f"--since {since!r} is not an ISO 8601 time ({exc})") from None
    if inputs:
        yield Chunk(pd.DataFrame.from_records(inputs), pd.Series(outputs, name="score"))


def _score_of(output: Any) -> Any:
    if isinstance(output, list) and output:
        return output[-1]
    if isinstance(output, dict):
        for key in ("score", "probability", "prediction"):
            if key in output:
                return output[key]
    return output
