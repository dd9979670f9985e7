"""Step 1 of the pipeline: read a notebook file into plain, typed cells.

JSON is parsed directly (fast, exact error positions); nbformat is used only to upgrade
version-3 notebooks. Nothing here executes or interprets cell code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2prod.errors import Finding, InputError, Location

CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # used with fullmatch: no trailing newline
MAX_NOTEBOOK_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Cell:
    index: int  # 0-based position in the notebook
    id: str
    cell_type: str  # "code" | "markdown" | "raw"
    source: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Notebook:
    path: Path
    name: str  # how the notebook is called in messages (its file name)
    cells: tuple[Cell, ...]
    nb2prod_metadata: dict[str, Any]
    sha256: str
    nbformat: tuple[int, int]
    notes: tuple[Finding, ...] = field(default=())

    def location(self, cell: Cell | None = None, role: str | None = None, line: int | None = None) -> Location:
        if cell is None:
            return Location(self.name)
        return Location(self.name, cell.index, cell.id, role, line)


def read_notebook(path: str | Path) -> Notebook:
    """Read and normalise `path`; raise InputError with one sentence on anything unusable."""
    path = Path(path)
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"the notebook path {path!r} is not valid UTF-8; rename the file") from None
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such notebook") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the notebook ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path} is a folder, not a notebook")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path} is not a regular file (a device, pipe or socket); a notebook is a .ipynb file")
    too_large = InputError(
        f"{path.name} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB; nb2prod does not read notebooks this large"
    )
    if info.st_size > MAX_NOTEBOOK_BYTES:
        raise too_large
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_NOTEBOOK_BYTES + 1)  # bounded: the file may grow after stat
    except OSError as exc:
        raise InputError(f"{path}: cannot read the notebook ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise too_large
    from nb2prod.textnotebook import is_text_notebook, text_to_ipynb

    if is_text_notebook(path):
        return dataclasses.replace(parse_notebook(text_to_ipynb(raw, path), path), sha256=notebook_sha256(raw))
    return parse_notebook(raw, path)


def notebook_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def parse_notebook(raw: bytes, path: Path) -> Notebook:
    name = path.name
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start}); a notebook is a UTF-8 JSON file") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{name} nests JSON too deeply to be a notebook") from None
    if not isinstance(data, dict):
        raise InputError(f"{name} is JSON but not a notebook (its top level is not an object)")
    major = data.get("nbformat")
    minor = data.get("nbformat_minor", 0)
    if not isinstance(major, int) or not isinstance(minor, int) or isinstance(major, bool) or isinstance(minor, bool):
        raise InputError(f"{name} has no valid nbformat version; it does not look like a Jupyter notebook")
    notes: list[Finding] = []
    if major == 3:
        data = _upgrade_v3(data, name)
        notes.append(
            Finding(
                "note",
                "upgraded-nbformat",
                "nbformat 3 notebook upgraded to nbformat 4 in memory; the file is unchanged.",
                Location(name),
            )
        )
        major, minor = 4, data.get("nbformat_minor", 0)
    elif major != 4:
        raise InputError(
            f"{name} uses nbformat {major}, which nb2prod does not read (it reads 4.x and upgrades 3); "
            "open and save it in a current Jupyter to convert it"
        )
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InputError(f"{name}: notebook metadata is not an object")
    _check_kernel(metadata, name)
    raw_cells = data.get("cells")
    if not isinstance(raw_cells, list):
        raise InputError(f"{name} has no list of cells")
    cells, cell_notes = _read_cells(raw_cells, name)
    notes.extend(cell_notes)
    nb2prod_meta = metadata.get("nb2prod") or {}
    if not isinstance(nb2prod_meta, dict):
        raise InputError(f"{name}: metadata.nb2prod must be an object of settings")
    return Notebook(path, name, tuple(cells), nb2prod_meta, notebook_sha256(raw), (major, minor), tuple(notes))


def _valid_unicode(text: str) -> bool:
    """JSON's `\\ud800` escapes give strings that are not Unicode text (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _upgrade_v3(data: dict[str, Any], name: str) -> dict[str, Any]:
    import nbformat

    worksheets = data.get("worksheets")
    if not isinstance(worksheets, list) or not all(
        isinstance(w, dict)
        and isinstance(w.get("cells"), list)
        and all(isinstance(c, dict) and isinstance(c.get("cell_type"), str) for c in w["cells"])
        for w in worksheets
    ):
        raise InputError(
            f"{name} is an nbformat 3 notebook without a valid list of worksheets holding cells, so it cannot be upgraded"
        )

    try:
        from nbformat.v3.rwbase import rejoin_lines

        node = rejoin_lines(nbformat.from_dict(data))
        upgraded = nbformat.convert(node, 4)
        for cell in upgraded.get("cells", []):
            cell.pop("id", None)  # the upgrade invents random ids; nb2prod numbers them instead
    except Exception:  # nbformat raises a variety of errors on malformed v3 files
        raise InputError(
            f"{name} is an nbformat 3 notebook whose structure is broken, so it cannot be upgraded; open and save it in Jupyter"
        ) from None
    return json.loads(json.dumps(upgraded))


def _check_kernel(metadata: dict[str, Any], name: str) -> None:
    kernelspec = metadata.get("kernelspec") or {}
    language_info = metadata.get("language_info") or {}
    language = ""
    if isinstance(kernelspec, dict):
        language = str(kernelspec.get("language") or "")
    if not language and isinstance(language_info, dict):
        language = str(language_info.get("name") or "")
    if language and language.lower() not in ("python", "python3", "python2", "ipython"):
        kernel = kernelspec.get("name", language) if isinstance(kernelspec, dict) else language
        raise InputError(
            f"{name} is written for the {language} kernel {kernel!r}; nb2prod builds Python notebooks only"
        )


def _read_cells(raw_cells: list[Any], name: str) -> tuple[list[Cell], list[Finding]]:
    cells: list[Cell] = []
    notes: list[Finding] = []
    seen: dict[str, int] = {}
    missing = 0
    for index, raw in enumerate(raw_cells):
        where = Location(name, index)
        if not isinstance(raw, dict):
            raise InputError(f"{where.describe()}: the cell is not a JSON object")
        cell_type = raw.get("cell_type")
        if cell_type not in ("code", "markdown", "raw"):
            raise InputError(f"{where.describe()}: unknown cell type {cell_type!r}")
        if "source" not in raw:
            raise InputError(
                f'{where.describe()}: the cell has no `source` field (nbformat requires one; an empty cell has "source": "")'
            )
        source = raw["source"]
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise InputError(f"{where.describe()}: the cell source is neither text nor a list of lines")
        if not _valid_unicode(source):
            raise InputError(
                f"{where.describe()}: the cell source holds an unpaired surrogate (\\ud800-\\udfff), which is not text"
            )
        # `\r\n` and a lone `\r` end lines as Python's tokenizer reads them; one spelling, `\n`, from here on
        source = source.replace("\r\n", "\n").replace("\r", "\n")
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict):
            notes.append(
                Finding(
                    "note",
                    "invalid-cell-metadata",
                    "the cell's metadata is not an object, so its tags are ignored",
                    where,
                )
            )
            meta = {}
        tags = meta.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and _valid_unicode(t) for t in tags):
            raise InputError(f"{where.describe()}: metadata.tags must be a list of strings")
        cell_id = raw.get("id")
        if not isinstance(cell_id, str) or not CELL_ID.fullmatch(cell_id):
            if cell_id is not None:
                notes.append(
                    Finding(
                        "note",
                        "invalid-cell-id",
                        f"the cell id {str(cell_id)[:40]!r} is not a valid nbformat id; nb2prod calls it cell-{index + 1}.",
                        where,
                    )
                )
            else:
                missing += 1
            cell_id = f"cell-{index + 1}"  # numbered like every message: 1-based, every cell counted
        if cell_id in seen:
            new_id = f"{cell_id}-{index + 1}"
            notes.append(
                Finding(
                    "note",
                    "duplicate-cell-id",
                    f"cell {index + 1} repeats the id {cell_id!r} of cell {seen[cell_id] + 1}; nb2prod calls it {new_id!r} (saving the notebook in JupyterLab gives it a new id).",
                    Location(name, index, cell_id),
                )
            )
            cell_id = new_id
        seen[cell_id] = index
        cells.append(Cell(index, cell_id, cell_type, source, tuple(tags)))
    if missing:
        notes.append(
            Finding(
                "note",
                "missing-cell-ids",
                f"{missing} cell(s) have no id (nbformat before 4.5); nb2prod calls them cell-N, N being the cell's number (1-based, as in every message).",
                Location(name),
            )
        )
    return cells, notes
