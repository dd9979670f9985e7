"""One cell on its own: clean its IPython syntax, check it compiles, find its names.

`prepare_cell` is a pure function of (code, roles, tagged), so its result is cached on disk per
cell: a rebuild re-analyses only the cells that changed.
"""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from nb2prod import __version__
from nb2prod.analysis.effects import Effect, cell_effects
from nb2prod.analysis.gates import gates_to_errors
from nb2prod.analysis.magics import clean_cell
from nb2prod.analysis.names import CellNames, analyse_names, blank_lines, drop_display_calls, drop_display_statements

CACHE_VERSION = 6  # bump when PreparedCell, or what goes into it, changes
# Findings that depend on the process (its stack, recursion limit, memory), not on the code alone.
ENVIRONMENT_DEPENDENT = frozenset({"too-complex"})


@dataclass(frozen=True)
class Event:
    """A finding about the cell, without its place (the caller knows the cell)."""

    severity: str
    code: str
    message: str
    line: int | None = None
    fix: str | None = None


@dataclass(frozen=True)
class PreparedCell:
    code: str | None  # None when the cell can't be used (see events)
    module_code: str | None  # the code for a module: statements that only display are left out
    names: CellNames | None
    has_test_functions: bool
    installs: tuple[tuple[str, int], ...]  # (pip spec, line)
    events: tuple[Event, ...]
    hoisted: tuple[tuple[int, str], ...] = ()  # (line, text) of the import lines blanked out of `code`
    effects: tuple[Effect, ...] = ()  # what an untagged cell does to names it did not bind first


def prepare_cell(code: str, roles: frozenset[str], tagged: bool) -> PreparedCell:
    try:
        return _prepare(code, roles, tagged)
    except RecursionError:
        return PreparedCell(
            None, None, None, False, (), (Event("error", "too-complex", "the code is nested too deeply to analyse"),)
        )


def _prepare(code: str, roles: frozenset[str], tagged: bool) -> PreparedCell:
    events: list[Event] = []
    cleaned = clean_cell(code)
    if cleaned.syntax_error is not None:
        err = cleaned.syntax_error
        return PreparedCell(
            None,
            None,
            None,
            False,
            (),
            (
                Event(
                    "error",
                    "syntax-error",
                    f"the code is not valid Python ({err.msg}), so it cannot be exported",
                    err.lineno,
                ),
            ),
        )
    for text, line in cleaned.escapes:
        events.append(
            Event(
                "error",
                "shell-escape",
                f"`{text}` is a shell command or magic that generated Python cannot run",
                line,
                "Move it to an untagged cell, or do it in Python (e.g. with subprocess).",
            )
        )
    for text, line in cleaned.dropped:
        events.append(
            Event("note", "magic-dropped", f"`{text}` is left out of the generated code (IPython only)", line)
        )
    if tagged:
        try:
            compile(cleaned.code, "<cell>", "exec", dont_inherit=True)
        except SyntaxError as err:
            hint = " (top-level await works only inside Jupyter; use asyncio.run)" if "await" in (err.msg or "") else ""
            events.append(
                Event("error", "syntax-error", f"the code cannot be compiled as a module ({err.msg}){hint}", err.lineno)
            )
            return PreparedCell(None, None, None, False, (), tuple(events))
        except (MemoryError, ValueError):
            events.append(Event("error", "too-complex", "the code is nested too deeply for Python to compile"))
            return PreparedCell(None, None, None, False, (), tuple(events))
    body, displays = drop_display_calls(cleaned.code)
    for line in displays:
        events.append(
            Event(
                "note",
                "display-dropped",
                "`display(...)` only shows output in Jupyter; it is left out of the generated code",
                line,
            )
        )
    try:
        names = analyse_names(body)
    except SyntaxError as err:  # symtable can be stricter than ast.parse
        events.append(
            Event(
                "error",
                "syntax-error",
                f"the code is not valid Python ({err.msg}), so it cannot be exported",
                err.lineno,
            )
        )
        return PreparedCell(None, None, None, False, (), tuple(events))
    original = body.split("\n")
    hoisted = tuple((line, original[line - 1]) for line in sorted(names.hoistable_lines) if 0 < line <= len(original))
    effects = () if tagged else cell_effects(body)
    body = blank_lines(body, names.hoistable_lines)
    if "metrics" in roles:
        body = gates_to_errors(body)
    has_tests = False
    if "test" in roles:
        has_tests = any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test")
            for n in ast.parse(body).body
        )
    return PreparedCell(
        body,
        drop_display_statements(body),
        names,
        has_tests,
        tuple(cleaned.installs),
        tuple(events),
        hoisted,
        effects,
    )


def cache_path(code: str, roles: frozenset[str], tagged: bool) -> Path:
    from nb2prod.formatting import cache_dir

    key = hashlib.sha256(f"{__version__}|{CACHE_VERSION}|{sorted(roles)}|{tagged}|{code}".encode()).hexdigest()
    return cache_dir().parent / "cells" / key[:2] / key


def prepare_cell_cached(code: str, roles: frozenset[str], tagged: bool) -> PreparedCell:
    path = cache_path(code, roles, tagged)
    try:
        with open(path, "rb") as handle:
            cached = pickle.load(handle)
        if isinstance(cached, PreparedCell):
            return cached
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError):
        pass
    prepared = prepare_cell(code, roles, tagged)
    if any(event.code in ENVIRONMENT_DEPENDENT for event in prepared.events):
        return prepared  # another process (a larger stack or recursion limit) may succeed: never cached
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            pickle.dump(prepared, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that can't be written only costs time
    return prepared
