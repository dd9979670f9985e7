"""The original notebook's cells as `verify` executes them, what refuses them (data downloads,
GPUs) and which cells bind or change a name (to point at the cause of a difference)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from nb2prod.errors import Location

# Shell commands that fetch data from the network.
_SHELL_DOWNLOAD = re.compile(r"\b(wget|curl|git\s+clone|kaggle|gsutil|gdown|aws\s+s3|huggingface-cli|scp|rsync)\b")
_SHELL_LINE = re.compile(r"^\s*(!|%sx\b|%system\b|%%bash\b|%%sh\b|%%script\b)")
_INSTALL_LINE = re.compile(r"^\s*[!%]+\s*(pip|pip3|conda|mamba|uv\s+pip)\b.*\binstall\b")
# Modules and calls that download, and values that ask for a GPU.
_DOWNLOAD_MODULES = {"requests", "httpx", "urllib3", "wget", "gdown", "boto3", "kaggle", "aiohttp", "pycurl"}
_DOWNLOAD_CALLS = {
    "urlopen", "urlretrieve", "fetch_openml", "load_dataset", "get_file", "hf_hub_download", "snapshot_download",
    "download_url", "download_and_extract_archive",
}  # fmt: skip
_SKLEARN_FETCH = re.compile(
    r"^fetch_(openml|california_housing|20newsgroups(_vectorized)?|covtype|kddcup99|lfw_pairs|lfw_people"
    r"|olivetti_faces|rcv1|species_distributions|file)$"
)
_URL = re.compile(r"^(https?|ftp|s3|gs|az|hf)://", re.IGNORECASE)
_GPU_MODULES = {"cupy", "cudf", "cuml", "pycuda", "rapids"}
_GPU_VALUES = re.compile(r"^(cuda(:\d+)?|gpu_hist)$", re.IGNORECASE)
# Method calls that only read the object they are called on.
READ_ONLY_METHODS = {
    "predict", "predict_proba", "predict_log_proba", "decision_function", "score", "transform", "get_params",
    "head", "tail", "describe", "copy", "info", "mean", "sum", "count", "plot", "items", "keys", "values", "get",
    "to_csv", "to_dict", "to_numpy", "tolist", "groupby", "apply", "map", "astype", "reshape", "format", "join",
    "split", "startswith", "endswith", "summary", "evaluate", "show", "query", "value_counts", "isna", "sample",
}  # fmt: skip


@dataclass(frozen=True)
class NotebookCell:
    index: int  # 0-based
    id: str
    roles: frozenset[str]
    source: str  # as written
    code: str  # valid Python (magics blanked), same line numbers

    @property
    def role(self) -> str | None:
        for role in ("parameters", "export", "train", "metrics", "predict", "test", "explain", "skip"):
            if role in self.roles:
                return role
        return None

    @property
    def in_job(self) -> bool:
        return bool(self.roles & {"parameters", "export", "train", "metrics", "predict"})

    def location(self, notebook: str, line: int | None = None) -> Location:
        return Location(notebook, self.index, self.id, self.role or "untagged", line)


def notebook_cells(notebook) -> tuple[NotebookCell, ...]:  # type: ignore[no-untyped-def]
    """The code cells of a read notebook, with their roles; `skip` cells are left out."""
    from nb2prod.analysis.magics import clean_cell
    from nb2prod.roles import resolve_roles

    roled, _ = resolve_roles(notebook)
    out = []
    for item in roled:
        if item.cell.cell_type != "code" or "skip" in item.roles:
            continue
        out.append(NotebookCell(item.index, item.cell.id, item.roles, item.cell.source, clean_cell(item.code).code))
    return tuple(out)


def executable_source(cell: NotebookCell) -> str:
    """The cell as verify runs it: `pip install` lines become comments (they are requirements,
    which the clean environment gets from the lock, and must not change the author's environment)."""
    lines = []
    for line in cell.source.split("\n"):
        lines.append(f"# (nb2prod verify does not install) {line.strip()}" if _INSTALL_LINE.match(line) else line)
    return "\n".join(lines)


def offline_problem(cell: NotebookCell) -> tuple[str, int] | None:
    """Why this cell cannot run offline and deterministically (what it does, line), or None."""
    shell_cell = bool(re.match(r"^\s*%%(bash|sh|script)\b", cell.source))
    for number, text in enumerate(cell.source.split("\n"), 1):
        if (shell_cell or _SHELL_LINE.match(text)) and _SHELL_DOWNLOAD.search(text):
            return f"runs `{text.strip().lstrip('!').strip()}`, which downloads", number
    try:
        tree = ast.parse(cell.code)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        line: int = getattr(node, "lineno", 1)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                root = module.split(".")[0]
                if root in _DOWNLOAD_MODULES or module in ("urllib.request", "http.client"):
                    return f"imports {module}, which downloads", line
                if root in _GPU_MODULES or module == "numba.cuda":
                    return f"imports {module}, which needs a GPU", line
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in _DOWNLOAD_CALLS or _SKLEARN_FETCH.match(name):
                return f"calls {name}(), which downloads", line
            if name == "cuda":
                return "calls .cuda(), which needs a GPU", line
            if any(
                k.arg == "download" and isinstance(k.value, ast.Constant) and k.value.value is True
                for k in node.keywords
            ):
                return f"calls {name}(download=True), which downloads", line
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _URL.match(node.value.strip()):
                return f"reads {node.value.strip()[:60]!r}, a network address", line
            if _GPU_VALUES.match(node.value.strip()):
                return f"asks for the device {node.value.strip()!r}, a GPU", line
    return None


def _base_name(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def changes(code: str) -> dict[str, list[tuple[int, str]]]:
    """Names a cell binds or changes: name -> [(line, how)], how = "binds" or "changes"."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    found: dict[str, list[tuple[int, str]]] = {}

    def add(name: str | None, line: int, how: str) -> None:
        if name:
            found.setdefault(name, []).append((line, how))

    def target(node: ast.AST, line: int) -> None:
        if isinstance(node, ast.Name):
            add(node.id, line, "binds")
        elif isinstance(node, (ast.Attribute, ast.Subscript)):
            add(_base_name(node), line, "changes")
        elif isinstance(node, (ast.Tuple, ast.List)):
            for item in node.elts:
                target(item, line)
        elif isinstance(node, ast.Starred):
            target(node.value, line)

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 1)
        if isinstance(node, ast.Assign):
            for item in node.targets:
                target(item, line)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            target(node.target, line)
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
                found[node.target.id][-1] = (line, "changes")
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            target(node.target, line)
        elif isinstance(node, ast.Delete):
            for item in node.targets:
                target(item, line)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(node.name, line, "binds")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                add((alias.asname or alias.name).split(".")[0], line, "binds")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in READ_ONLY_METHODS:
                add(_base_name(node.func.value), line, "changes")
    return found


def reads(code: str) -> set[str]:
    """Names a cell reads."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
