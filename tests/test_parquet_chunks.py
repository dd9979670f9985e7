"""Parquet files read in tables of exactly `chunk_rows` rows, whatever their row groups."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nb2prod.parquet_chunks import parquet_tables


@pytest.mark.parametrize("groups", [[7, 3, 10, 1, 9], [100], [1] * 23, [25, 25]])
@pytest.mark.parametrize("chunk_rows", [1, 4, 10, 25, 1000])
def test_tables_have_chunk_rows_rows_in_file_order(tmp_path, groups, chunk_rows):
    path = tmp_path / "in.parquet"
    total = sum(groups)
    with pq.ParquetWriter(path, pa.schema([("row", pa.int64()), ("text", pa.string())])) as writer:
        start = 0
        for size in groups:
            rows = list(range(start, start + size))
            writer.write_table(pa.table({"row": rows, "text": [f"r{r}" for r in rows]}))
            start += size
    parquet = pq.ParquetFile(path)
    assert parquet.num_row_groups == len(groups)

    tables = list(parquet_tables(parquet, chunk_rows))

    sizes = [t.num_rows for t in tables]
    assert all(size == chunk_rows for size in sizes[:-1])
    assert 0 < sizes[-1] <= chunk_rows
    assert sum(sizes) == total
    rows = [r for t in tables for r in t.column("row").to_pylist()]
    assert rows == list(range(total))
    assert [t for table in tables for t in table.column("text").to_pylist()] == [f"r{r}" for r in rows]


def test_an_empty_file_gives_no_table(tmp_path):
    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"row": pa.array([], pa.int64())}), path)
    assert list(parquet_tables(pq.ParquetFile(path), 10)) == []
