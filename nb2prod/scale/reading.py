"""Batch inputs read in chunks with pyarrow: CSV, parquet (a file or a folder of parts), JSON lines.

Memory stays bounded by the chunk size whatever the input's size. CSV columns that the contract
says are numbers are read as text and converted per chunk, so one bad value is a bad row, not a
failed read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError
from nb2prod.parquet_chunks import parquet_tables

FORMATS = ("csv", "parquet", "jsonl")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True)
class InputSpec:
    path: Path
    format: str  # one of FORMATS
    files: tuple[Path, ...]
    size_bytes: int
    total_rows: int | None  # known up front for parquet


@dataclass(frozen=True)
class Chunk:
    first_row: int  # 1-based number of the chunk's first data row (the header is not a row)
    table: Any  # a pyarrow Table (CSV, parquet) ...
    records: tuple[dict[str, Any], ...] | None  # ... or the JSON objects of a JSON-lines chunk
    bytes_read: int  # of the whole input so far, for the progress estimate

    @property
    def rows(self) -> int:
        return len(self.records) if self.records is not None else self.table.num_rows


def describe_input(path: Path, fmt: str = "auto") -> InputSpec:
    """Which files make up INPUT and their format; refuses what cannot be read, naming it."""
    if not path.exists():
        raise InputError(f"{path}: no such input file or folder.")
    if path.is_dir():
        files = tuple(
            sorted(
                p
                for p in path.rglob("*.parquet")
                if not any(part.startswith(("_", ".")) for part in p.parts[len(path.parts) :])
            )
        )
        if not files:
            raise InputError(f"{path}: the folder holds no .parquet parts.")
        fmt = "parquet" if fmt == "auto" else fmt
        if fmt != "parquet":
            raise InputError(f"{path}: a folder input must hold parquet parts, not {fmt}.")
    else:
        files = (path,)
        if fmt == "auto":
            fmt = _SUFFIXES.get(path.suffix.lower(), "")
            if not fmt:
                raise InputError(
                    f"{path}: cannot tell the format from the suffix {path.suffix or '(none)'!r}; "
                    "use .csv, .parquet or .jsonl, or pass --input-format."
                )
    if fmt not in FORMATS:
        raise InputError(f"unknown input format {fmt!r}: use {', '.join(FORMATS)}.")
    total = None
    if fmt == "parquet":
        import pyarrow.parquet as pq

        total = 0
        for file in files:
            try:
                total += pq.ParquetFile(file).metadata.num_rows
            except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
                raise InputError(f"{file}: not a readable parquet file ({str(exc).splitlines()[0]}).") from None
    return InputSpec(path, fmt, files, sum(f.stat().st_size for f in files), total)


def input_sha256(spec: InputSpec) -> str:
    """sha256 over every file of the input (its path relative to INPUT, then its bytes)."""
    digest = hashlib.sha256()
    for file in spec.files:
        digest.update((file.relative_to(spec.path).as_posix() if spec.path.is_dir() else file.name).encode())
        digest.update(b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def iter_chunks(spec: InputSpec, chunk_rows: int, text_columns: tuple[str, ...] = ()) -> Iterator[Chunk]:
    """Chunks of at most `chunk_rows` rows, in input order. `text_columns` (CSV only) are read as text."""
    if spec.format == "csv":
        yield from _csv_chunks(spec, chunk_rows, text_columns)
    elif spec.format == "parquet":
        yield from _parquet_chunks(spec, chunk_rows)
    else:
        yield from _jsonl_chunks(spec, chunk_rows)


def _csv_chunks(spec: InputSpec, chunk_rows: int, text_columns: tuple[str, ...]) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = spec.files[0]
    handle = open(path, "rb")
    try:
        try:
            reader = pacsv.open_csv(
                handle,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter="\t" if path.suffix.lower() == ".tsv" else ","),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in text_columns}, strings_can_be_null=True
                ),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise InputError(f"{path}: not valid CSV ({str(exc).splitlines()[0]}).") from None
        first_row = 1
        pending: list[Any] = []
        pending_rows = 0
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise InputError(
                    f"{path}: not valid CSV after row {first_row + pending_rows - 1} ({str(exc).splitlines()[0]})."
                ) from None
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield Chunk(first_row, table.slice(0, chunk_rows), None, handle.tell())
                first_row += chunk_rows
                pending = table.slice(chunk_rows).to_batches()
                pending_rows -= chunk_rows
        if pending_rows:
            yield Chunk(first_row, pa.Table.from_batches(pending), None, handle.tell())
    finally:
        handle.close()


def _parquet_chunks(spec: InputSpec, chunk_rows: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    first_row = 1
    done_bytes = 0
    for file in spec.files:
        size = file.stat().st_size
        parquet = pq.ParquetFile(file)
        rows = max(parquet.metadata.num_rows, 1)
        seen = 0
        for table in parquet_tables(parquet, chunk_rows):
            seen += table.num_rows
            yield Chunk(first_row, table, None, done_bytes + size * seen // rows)
            first_row += table.num_rows
        done_bytes += size


def _jsonl_chunks(spec: InputSpec, chunk_rows: int) -> Iterator[Chunk]:
    path = spec.files[0]
    first_row = 1
    records: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}, line {number}: not valid JSON ({exc}).") from None
            if not isinstance(record, dict):
                raise InputError(
                    f"{path}, line {number}: expected a JSON object of column values, got {type(record).__name__}."
                )
            records.append(record)
            if len(records) >= chunk_rows:
                yield Chunk(first_row, None, tuple(records), handle.tell())
                first_row += len(records)
                records = []
        if records:
            yield Chunk(first_row, None, tuple(records), handle.tell())
