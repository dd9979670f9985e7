"""Findings and errors: every problem nb2prod reports names its place in the notebook."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Location:
    """A place in a notebook: the cell (0-based index, id, roles) and a 1-based line in it."""

    notebook: str
    cell_index: int | None = None
    cell_id: str | None = None
    role: str | None = None
    line: int | None = None

    def describe(self) -> str:
        if self.cell_index is None:
            return self.notebook
        parts = [f"{self.notebook}: cell {self.cell_index + 1}"]
        detail = []
        if self.cell_id:
            detail.append(f"id {self.cell_id}")
        if self.role:
            detail.append(self.role)
        if detail:
            parts.append(f" ({', '.join(detail)})")
        if self.line is not None:
            parts.append(f", line {self.line}")
        return "".join(parts)


@dataclass(frozen=True)
class Finding:
    """One error or note about a notebook, with where it is and what would fix it."""

    severity: str  # "error" | "note"
    code: str  # short, stable identifier, e.g. "undefined-name"
    message: str  # one sentence, without the location
    location: Location | None = None
    fix: str | None = None
    related: Location | None = None  # e.g. the cell that defines a name

    def render(self) -> str:
        text = self.message
        if self.location is not None:
            text = f"{self.location.describe()}: {text}"
        if self.fix:
            text = f"{text}; {self.fix[:1].lower()}{self.fix[1:]}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Nb2prodError(Exception):
    """An error reported to the user as one sentence; `exit_code` follows SPEC (2 = usage/input)."""

    exit_code = 2

    def __init__(self, message: str, findings: tuple[Finding, ...] = ()):
        super().__init__(message)
        self.message = message
        self.findings = findings


class InputError(Nb2prodError):
    """The notebook, configuration or a command-line value cannot be used as given."""


class NotebookErrors(Nb2prodError):
    """Analysis found errors in the notebook; each finding names its cell."""

    def __init__(self, findings: tuple[Finding, ...]):
        errors = [f for f in findings if f.severity == "error"]
        head = errors[0].render() if errors else "the notebook has errors"
        if len(errors) > 1:
            head += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        super().__init__(head, findings)


class OutputConflict(Nb2prodError):
    """The output folder holds something nb2prod must not overwrite (a hand edit, a foreign folder)."""
