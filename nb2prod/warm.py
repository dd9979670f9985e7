"""Warm the per-cell caches of a large notebook on every core before the build runs.

Preparing a cell (analysis/cells.py) and formatting its chunks (formatting.py) depend on the
cell alone and are cached on disk, so worker processes can do them for all tagged cells at once
while the main process scans the installed distributions. The build that follows is then a
rebuild on warm caches. Anything warmed wrongly only costs time: the build computes everything
again where the cache has no entry.
"""

from __future__ import annotations

import os

from nb2prod.roles import RoledCell

MIN_CELLS = 64  # below this, one process is faster than starting workers


def warm_caches(cells: tuple[RoledCell, ...], line_length: int) -> None:
    """Prepare and format, on every core, the tagged cells the cache does not hold yet."""
    from nb2prod.analysis.cells import cache_path

    workers = min(os.cpu_count() or 1, 8)
    tagged = [c for c in cells if c.cell.cell_type == "code" and c.roles and "skip" not in c.roles]
    if len(tagged) < MIN_CELLS or workers < 2:
        return
    items = [(c.index, c.cell.id, c.code, c.roles) for c in tagged if not cache_path(c.code, c.roles, True).exists()]
    if len(items) < MIN_CELLS:
        return  # a rebuild: the few changed cells are quicker in this process
    from nb2prod.analysis.requirements import _distributions_by_import
    from nb2prod.formatting import process_pool

    batches = [items[i :: workers * 4] for i in range(workers * 4)]
    with process_pool(workers) as pool:
        futures = [pool.submit(_warm_batch, batch, line_length) for batch in batches if batch]
        _distributions_by_import()  # meanwhile, in this process
        for future in futures:
            future.result()


def _warm_batch(items: list[tuple[int, str, str, frozenset[str]]], line_length: int) -> None:
    from nb2prod.analysis.cells import prepare_cell_cached
    from nb2prod.formatting import format_jobs
    from nb2prod.plan import chunk_format_job, chunk_shapes

    jobs = []
    for index, cell_id, code, roles in items:
        prepared = prepare_cell_cached(code, roles, True)
        if prepared.code is None:
            continue
        for indent, in_module in chunk_shapes(roles, prepared.has_test_functions):
            chunk_code = (prepared.module_code or prepared.code) if in_module else prepared.code
            jobs.append(chunk_format_job(index, cell_id, chunk_code, indent)[0])
    format_jobs(jobs, line_length, parallel=False)
