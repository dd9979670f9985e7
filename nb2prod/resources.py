"""Where nb2prod's shipped files are: templates/ sits inside the wheel as nb2prod/templates,
and beside the package in a source checkout."""

from __future__ import annotations

from pathlib import Path


def templates_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("nb2prod's templates folder is missing from this installation")
