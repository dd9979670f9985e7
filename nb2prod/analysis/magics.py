"""IPython syntax in cells: `!cmd`, `%magic`, `%%magic`.

Such cells are not Python, so IPython's own input transformer turns them into
`get_ipython()...` calls, and the calls are then classified on the AST:
installs become requirements, display-only magics are dropped, `%time`-like magics keep the
statement they time, and any other shell escape is an error in a tagged cell.
"""

from __future__ import annotations

import ast
import shlex
from dataclasses import dataclass, field

DISPLAY_MAGICS = frozenset(
    "matplotlib config load_ext reload_ext unload_ext autoreload aimport precision who whos who_ls "
    "pinfo pinfo2 psource pdoc pdef pfile history lsmagic pprint xmode notebook colors "
    "magic quickref page clear cls autosave automagic autocall doctest_mode alias_magic "
    "javascript html markdown latex svg pylab".split()
)
TIMING_LINE_MAGICS = frozenset({"time", "timeit", "prun"})
PASS_THROUGH_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})
INSTALLERS = frozenset({"pip", "conda", "mamba"})
TIMING_OPTIONS_WITH_VALUE = frozenset({"-n", "-r", "-p"})  # %timeit -n 10 -r 3; flags such as -o, -q take none


@dataclass
class CleanCode:
    code: str  # valid Python, same line numbers as the cell (magic lines blanked or replaced)
    installs: list[tuple[str, int]] = field(default_factory=list)  # (requirement, line)
    dropped: list[tuple[str, int]] = field(default_factory=list)  # (magic text, line)
    escapes: list[tuple[str, int]] = field(default_factory=list)  # shell escapes / magics that can't be kept
    syntax_error: SyntaxError | None = None


def clean_cell(code: str) -> CleanCode:
    try:
        ast.parse(code)
        return CleanCode(code)
    except SyntaxError as first_error:
        error = first_error
    except ValueError as exc:  # e.g. null bytes in the source
        return CleanCode(code, syntax_error=SyntaxError(str(exc)))
    from IPython.core.inputtransformer2 import TransformerManager  # heavy: only for cells with magics

    original_lines = code.split("\n")
    try:
        transformed = TransformerManager().transform_cell(code)
        tree = ast.parse(transformed)
    except (SyntaxError, ValueError):
        return CleanCode(code, syntax_error=error)
    if transformed == code or "get_ipython()" not in transformed:
        return CleanCode(code, syntax_error=error)
    result = CleanCode("")
    lines = transformed.split("\n")
    for node in ast.walk(tree):
        for child_list_name in ("body", "orelse", "finalbody", "handlers"):
            body = getattr(node, child_list_name, None)
            if not isinstance(body, list):
                continue
            for statement in body:
                if isinstance(statement, ast.stmt):
                    _classify(statement, node is tree, lines, original_lines, result)
    # magics left anywhere else (inside expressions not handled above) are escapes
    for node in ast.walk(ast.parse("\n".join(lines))):
        if _magic_call(node) is not None and isinstance(node, (ast.expr, ast.stmt)):
            result.escapes.append((_original_line(original_lines, node.lineno), node.lineno))
            break
    result.code = "\n".join(lines)
    if len(result.code.split("\n")) < len(original_lines):
        result.code += "\n" * (len(original_lines) - len(result.code.split("\n")))
    return result


def _original_line(original_lines: list[str], lineno: int) -> str:
    if 0 < lineno <= len(original_lines):
        return original_lines[lineno - 1].strip()
    return ""


def _magic_call(node: ast.AST) -> tuple[str, list[str]] | None:
    """`get_ipython().KIND(args...)` → (KIND, literal string args)."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    target = node.func.value
    if not (isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "get_ipython"):
        return None
    args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return node.func.attr, args


def _classify(
    statement: ast.stmt, top_level: bool, lines: list[str], original_lines: list[str], result: CleanCode
) -> None:
    call = _magic_call(statement.value) if isinstance(statement, ast.Expr) else None
    if call is None:
        return
    kind, args = call
    line = statement.lineno
    text = _original_line(original_lines, line)
    indent = " " * statement.col_offset
    blank = "" if top_level else indent + "pass"

    def replace(new_lines: list[str]) -> None:
        span = statement.end_lineno - statement.lineno + 1 if statement.end_lineno else 1
        filler = new_lines + [""] * max(0, span - len(new_lines))
        lines[statement.lineno - 1 : statement.lineno - 1 + span] = (
            filler[:span] if len(new_lines) <= span else new_lines
        )

    if kind == "system" and args and _is_install(args[0]):
        result.installs.extend((req, line) for req in _install_targets(args[0]))
        replace([blank])
    elif kind == "run_line_magic" and len(args) == 2 and args[0] in INSTALLERS and _is_install(f"{args[0]} {args[1]}"):
        result.installs.extend((req, line) for req in _install_targets(f"{args[0]} {args[1]}"))
        replace([blank])
    elif kind == "run_line_magic" and args and args[0] in DISPLAY_MAGICS:
        result.dropped.append((text, line))
        replace([blank])
    elif kind == "run_line_magic" and len(args) == 2 and args[0] in TIMING_LINE_MAGICS:
        statement_text = _strip_options(args[1])
        result.dropped.append((text, line))
        replace([indent + statement_text])
    elif (
        kind == "run_cell_magic"
        and len(args) == 3
        and args[0] in PASS_THROUGH_CELL_MAGICS
        and top_level
        and statement.lineno == 1
    ):
        result.dropped.append((text, line))
        body = args[2].rstrip("\n").split("\n")
        lines[:] = [""] + body + lines[statement.end_lineno or 1 :]
    else:
        result.escapes.append((text or f"%{args[0] if args else kind}", line))
        replace([blank])


def _is_install(command: str) -> bool:
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    words = [w for w in words if w not in ("-m", "python", "python3")]
    return len(words) >= 2 and words[0] in INSTALLERS and words[1] == "install"


def _install_targets(command: str) -> list[str]:
    words = shlex.split(command)
    start = words.index("install") + 1
    targets = []
    skip_next = False
    for position, word in enumerate(words[start:], start):
        if word in ("-r", "--requirement") and position + 1 < len(words):
            targets.append(f"-r {words[position + 1]}")
        if skip_next:
            skip_next = False
            continue
        if word in ("-r", "-c", "-e", "--index-url", "-i", "--extra-index-url", "--target", "-t", "--channel"):
            skip_next = True
            continue
        if word.startswith("-") or word.startswith("$") or word.startswith("{"):
            continue
        targets.append(word)
    return targets


def _strip_options(statement: str) -> str:
    """`%timeit -n 10 -r 3 f(x)` keeps `f(x)`."""
    words = statement.split(" ")
    while words and words[0].startswith("-"):
        option = words.pop(0)
        if option in TIMING_OPTIONS_WITH_VALUE and words:
            words.pop(0)
    return " ".join(words).strip()
