"""Notebooks kept as text (jupytext's `py:percent`, and `py:light` with a jupytext header).

The file is converted to nbformat 4 JSON by jupytext, then read like any `.ipynb`. Cell ids are
derived from the cells themselves (a hash of the cell type and source, numbered among equal
cells), never random: reading the same file twice gives the same ids, so builds stay
byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from nb2prod.errors import InputError

TEXT_SUFFIXES = frozenset({".py"})
_HEADER = re.compile(r"\A(?:#!.*\n)?(?:#.*coding[:=].*\n)?# ---\s*\n#\s*jupyter:", re.MULTILINE)
_PERCENT = re.compile(r"^# %%", re.MULTILINE)


def is_text_notebook(path: Path) -> bool:
    return path.suffix.lower() in TEXT_SUFFIXES


def is_notebook_path(path: Path) -> bool:
    """Does `path` name a notebook nb2prod reads (`.ipynb`, or a jupytext text notebook)?"""
    return path.suffix.lower() == ".ipynb" or is_text_notebook(path)


def text_to_ipynb(raw: bytes, path: Path) -> bytes:
    """The nbformat 4 JSON of a jupytext text notebook; InputError for any other text file."""
    name = path.name
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte {exc.start})") from None
    has_header = _HEADER.search(text) is not None
    if not has_header and _PERCENT.search(text) is None:
        raise InputError(
            f"{name} is not a jupytext notebook: it has neither `# %%` cell markers nor a jupytext header; "
            "mark its cells with `# %%` lines (jupytext's py:percent format) or pass the .ipynb"
        )
    try:
        import jupytext
    except ImportError:
        raise InputError(f"reading {name} needs jupytext: pip install nb2prod[jupytext]") from None
    try:
        notebook = jupytext.reads(text, fmt="py:percent" if not has_header else "py")
    except Exception as exc:  # jupytext raises assorted errors on malformed headers
        raise InputError(f"{name} could not be read as a jupytext notebook ({type(exc).__name__}: {exc})") from None
    data = json.loads(json.dumps(notebook))
    seen: dict[str, int] = {}
    for cell in data.get("cells", []):
        digest = hashlib.sha256(f"{cell.get('cell_type')}\0{cell.get('source', '')}".encode()).hexdigest()[:12]
        seen[digest] = seen.get(digest, 0) + 1
        cell["id"] = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
    return json.dumps(data, sort_keys=True).encode()
