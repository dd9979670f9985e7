"""Black formatting of generated code, designed for large notebooks.

Each cell's code is formatted on its own, once: results are cached on disk by the hash of
(black version, line length, indent, code), so a rebuild reformats only the cells that changed,
and a cold build spreads the work over all cores. Chunks are formatted exactly as black would
format them in place (module level, or inside a function body), so the assembled files are
black-stable; the build's tests check that.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
import os
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRAPPER = "def _nb2prod_chunk():\n"
PARALLEL_THRESHOLD = 64  # uncached chunks below this are formatted in-process
CACHE_VERSION = 2  # bump when what is cached changes


@dataclass(frozen=True)
class FormatJob:
    code: str
    indent: int  # 0 = module level, 4 = inside a function body


@dataclass(frozen=True)
class Formatted:
    text: str  # formatted, indented, no trailing newline
    statement_lines: tuple[tuple[int, int], ...]  # (line in text, line in the source code), 1-based


def cache_dir() -> Path:
    """The format cache (other caches sit beside it): $NB2PROD_CACHE_DIR, else under $XDG_CACHE_HOME or ~/.cache."""
    return _cache_dir(os.environ.get("NB2PROD_CACHE_DIR"), os.environ.get("XDG_CACHE_HOME"))


@functools.lru_cache(maxsize=8)
def _cache_dir(base: str | None, xdg: str | None) -> Path:
    if base:
        return Path(base)
    return Path(xdg or str(Path.home() / ".cache")) / "nb2prod" / "format"


def _black_version() -> str:
    from importlib.metadata import version

    return version("black")


def format_jobs(jobs: list[FormatJob], line_length: int, parallel: bool = True) -> list[Formatted]:
    version = _black_version()
    keys = [
        hashlib.sha256(f"{CACHE_VERSION}|{version}|{line_length}|{job.indent}|{job.code}".encode()).hexdigest()
        for job in jobs
    ]
    folder = cache_dir()
    results: list[Formatted | None] = []
    for key in keys:
        results.append(_read_cache(folder / key[:2] / key))
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        pending = [jobs[i] for i in todo]
        if parallel and len(pending) >= PARALLEL_THRESHOLD and (os.cpu_count() or 1) > 1:
            workers = min(os.cpu_count() or 1, 8)
            size = max(1, len(pending) // (workers * 4))
            with process_pool(workers) as pool:
                done = list(
                    pool.map(
                        _format_batch, [(pending[i : i + size], line_length) for i in range(0, len(pending), size)]
                    )
                )
            formatted = [item for batch in done for item in batch]
        else:
            formatted = _format_batch((pending, line_length))
        for i, item in zip(todo, formatted):
            results[i] = item
            _write_cache(folder / keys[i][:2] / keys[i], item)
    return [r for r in results if r is not None]


def process_pool(workers: int) -> Any:
    """Worker processes: forked (fast, nothing to import again) when this process has a single
    thread; spawned otherwise (a server calling the build from a thread), since forking a
    multi-threaded process can leave the child holding a lock no thread will release."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _read_cache(path: Path) -> Formatted | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Formatted(data["text"], tuple(tuple(pair) for pair in data["lines"]))  # type: ignore[misc]
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(path: Path, item: Formatted) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": item.text, "lines": item.statement_lines}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that can't be written only costs time


def _format_batch(args: tuple[list[FormatJob], int]) -> list[Formatted]:
    jobs, line_length = args
    return [format_chunk(job, line_length) for job in jobs]


def format_chunk(job: FormatJob, line_length: int) -> Formatted:
    import black

    mode = black.Mode(line_length=line_length)
    source_starts = _statement_lines(ast.parse(job.code))
    if job.indent == 0:
        text = black.format_str(job.code, mode=mode).rstrip("\n")
        formatted_starts = _statement_lines(ast.parse(text))
    else:
        wrapped = WRAPPER + indent_code(job.code, job.indent) + "\n"
        out = black.format_str(wrapped, mode=mode)
        formatted_starts = [line - 1 for line in _statement_lines(ast.parse(out))[1:]]  # minus the wrapper
        text = out.split("\n", 1)[1].rstrip("\n")
    # black keeps the syntax tree, so statements pair up one to one in breadth-first order
    pairs = tuple(sorted(zip(formatted_starts, source_starts))) if len(formatted_starts) == len(source_starts) else ()
    return Formatted(text, pairs)


def _statement_lines(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.stmt)]


def format_module(text: str, line_length: int) -> str:
    """Format a small generated scaffold (no cell code) with black."""
    import black

    return black.format_str(text, mode=black.Mode(line_length=line_length))


def indent_code(code: str, indent: int) -> str:
    """Indent every line except continuation lines of multi-line strings, whose text must not change."""
    inside_string: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.STRING and token.end[0] > token.start[0]:
            inside_string.update(range(token.start[0] + 1, token.end[0] + 1))
        elif token.type == getattr(tokenize, "FSTRING_MIDDLE", -1) and token.end[0] > token.start[0]:
            inside_string.update(range(token.start[0] + 1, token.end[0] + 1))
    pad = " " * indent
    lines = code.split("\n")
    out = [
        line if (number in inside_string or not line.strip()) else pad + line for number, line in enumerate(lines, 1)
    ]
    body = "\n".join(out)
    return body if body.strip() else pad + "pass"
