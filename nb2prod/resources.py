"""Where nb2prod's shipped files are, and the one jinja2 environment that renders them.

templates/ sits inside the wheel as nb2prod/templates, and beside the package in a checkout.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from nb2prod.errors import Nb2prodError


def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise Nb2prodError("nb2prod's templates are missing from this installation (reinstall nb2prod)")


@functools.lru_cache(maxsize=1)
def jinja_environment() -> Any:
    """Strict, unescaped (nothing renders to HTML), and with compiled templates cached on disk:
    compiling them costs more than rendering on a rebuild."""
    import jinja2

    from nb2prod.formatting import cache_dir

    bytecode = cache_dir().parent / "templates"
    try:
        bytecode.mkdir(parents=True, exist_ok=True)
        cache = jinja2.FileSystemBytecodeCache(str(bytecode))
    except OSError:
        cache = None
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=cache,
    )
