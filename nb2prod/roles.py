"""Step 2: give each cell its roles, from metadata tags and `#|` directive lines.

Both places are equivalent (SPEC "Cell roles"); nbdev and Kubeflow Kale markers map onto the
same roles so that their notebooks build without edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from nb2prod.errors import Finding, Location
from nb2prod.notebook import Cell, Notebook

ROLES = ("parameters", "export", "train", "metrics", "predict", "explain", "test", "skip")
DEFAULT_MODULE = "core"

# Markers of other tools that mean one of our roles.
ALIASES = {
    "exports": "export",  # nbdev: export and show
    "exporti": "export",  # nbdev: export, internal (kept out of __all__)
    "imports": "export",  # Kale
    "functions": "export",  # Kale
    "pipeline-parameters": "parameters",  # Kale
    "pipeline-metrics": "metrics",  # Kale
}
# Kale's own markers (its notebook processor's tag language), by the kind of Kale block they open.
KALE_KINDS = {
    "imports": "imports",
    "functions": "functions",
    "pipeline-parameters": "pipeline-parameters",
    "pipeline-metrics": "pipeline-metrics",
}
KALE_STEP = re.compile(r"^(step|block):([_a-z][_a-z0-9]*)?$")  # `step:NAME` is Kale's current `block:NAME`
KALE_METRIC_LINE = re.compile(r"^print\(([a-z](?:[_a-z0-9]{0,62}[a-z0-9])?)\)$")
# Markers that are known and carry no role of their own.
IGNORED = {
    "hide",
    "hide_input",
    "hide_output",
    "eval",
    "echo",
    "output",
    "code-fold",
    "filter_stream",
    "injected-parameters",
    "default_exp",
    "prev",
    "export_to",
}


@dataclass(frozen=True)
class RoledCell:
    cell: Cell
    roles: frozenset[str]
    module: str | None  # the export target, for export cells
    internal: bool  # exported but kept out of __all__ (nbdev `exporti`)
    code: str  # the source with directive lines blanked out (line numbers unchanged)

    @property
    def index(self) -> int:
        return self.cell.index

    @property
    def primary_role(self) -> str | None:
        for role in ROLES:
            if role in self.roles:
                return role
        return None

    def location(self, notebook: Notebook, line: int | None = None) -> Location:
        return notebook.location(self.cell, self.primary_role, line)


@dataclass(frozen=True)
class Marker:
    role: str | None  # one of ROLES, or None for ignored markers
    module: str | None = None
    internal: bool = False
    default_module: str | None = None
    kale: str | None = None  # the Kale block kind ("step", "imports", ...) for Kale markers


def resolve_roles(notebook: Notebook) -> tuple[tuple[RoledCell, ...], tuple[Finding, ...]]:
    """Return every cell with its roles, plus notes (unknown tags, near-miss spellings)."""
    notes: list[Finding] = []
    default_module = DEFAULT_MODULE
    parsed: list[tuple[Cell, list[Marker], str]] = []
    for cell in notebook.cells:
        markers: list[Marker] = []
        code = cell.source
        if cell.cell_type == "code":
            for tag in cell.tags:
                marker = _parse_marker(tag, notebook, cell, notes, "tag")
                if marker is not None:
                    markers.append(marker)
            directive_markers, code = _read_directives(cell, notebook, notes)
            markers.extend(directive_markers)
        for marker in markers:
            if marker.default_module:
                default_module = marker.default_module
        parsed.append((cell, markers, code))

    cells: list[RoledCell] = []
    kale_block: RoledCell | None = None  # the Kale block an untagged cell continues
    for cell, markers, code in parsed:
        if cell.cell_type != "code":
            cells.append(RoledCell(cell, frozenset(), None, False, code))
            continue
        roles = {m.role for m in markers if m.role}
        if not roles and kale_block is not None:
            # Kale merges an untagged cell into the block of the tagged cell before it.
            cells.append(replace(kale_block, cell=cell, code=code))
            continue
        module = None
        internal = False
        if "export" in roles:
            targets = [m.module for m in markers if m.role == "export" and m.module]
            module = targets[0] if targets else default_module
            internal = any(m.internal for m in markers if m.role == "export") and not any(
                not m.internal for m in markers if m.role == "export"
            )
        if "skip" in roles:
            roles = {"skip"}
            module = None
        roled = RoledCell(cell, frozenset(roles), module, internal, code)
        cells.append(roled)
        if "skip" not in roles:  # Kale does not continue a skipped cell, nor does a skip end a block
            kale_block = roled if any(m.kale for m in markers) else None
    return _kale_metrics(tuple(cells), parsed), tuple(notes)


def _kale_metrics(cells: tuple[RoledCell, ...], parsed: list[tuple[Cell, list[Marker], str]]) -> tuple[RoledCell, ...]:
    """Kale records, from its `pipeline-metrics` cells (and the untagged cells continuing them), every
    `print(name)` line as the metric `name` (underscores become dashes). Such a cell ends with the same
    record as a `metrics` dict, on a line after its own code."""
    kale_metrics = {c.index for c, markers, _ in parsed if any(m.kale == "pipeline-metrics" for m in markers)}
    out = list(cells)
    first = True
    block = False
    for position, roled in enumerate(cells):
        if roled.cell.cell_type != "code":
            continue
        if roled.index in kale_metrics:
            block = True
        elif roled.roles and roled.roles != frozenset({"metrics"}):
            block = False
        if not block or "metrics" not in roled.roles:
            continue
        lines = [line.strip() for line in roled.code.split("\n") if line.strip()]
        names = [KALE_METRIC_LINE.match(line) for line in lines]
        if not lines or not all(names):
            continue
        entries = ", ".join(f"{m.group(1).replace('_', '-')!r}: {m.group(1)}" for m in names if m)
        record = f"metrics = {{{entries}}}" if first else f"metrics = {{**metrics, {entries}}}"
        first = False
        out[position] = replace(roled, code=roled.code.rstrip("\n") + "\n" + record)
    return tuple(out)


def _read_directives(cell: Cell, notebook: Notebook, notes: list[Finding]) -> tuple[list[Marker], str]:
    """Directive lines are `#|` comments at the top of a code cell; they are blanked in the code."""
    lines = cell.source.split("\n")
    markers: list[Marker] = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#|"):
            break
        marker = _parse_marker(stripped[2:].strip(), notebook, cell, notes, "directive", line=number + 1)
        if marker is not None:
            markers.append(marker)
        lines[number] = ""
    return markers, "\n".join(lines)


def _parse_marker(
    text: str, notebook: Notebook, cell: Cell, notes: list[Finding], kind: str, line: int | None = None
) -> Marker | None:
    word, argument = _split_marker(text)
    lowered = word.lower()
    if lowered == "default_exp":
        return Marker(None, default_module=argument or None)
    if KALE_STEP.match(lowered) or lowered in ("block", "step"):  # Kale pipeline step
        return Marker("train", kale="step")
    if lowered.startswith("prev:"):
        return Marker(None)
    role = ALIASES.get(lowered, lowered)
    if role in ROLES:
        module = argument if role == "export" and argument else None
        return Marker(role, module=module, internal=lowered == "exporti", kale=KALE_KINDS.get(lowered))
    if lowered in IGNORED or not lowered:
        return None
    guess = _near_role(lowered)
    if guess is not None:
        notes.append(
            Finding(
                "note",
                "unknown-role",
                f"the {kind} {word!r} is not an nb2prod role, so the cell is untagged; did you mean {guess!r}?",
                notebook.location(cell, None, line),
            )
        )
    return None


def _split_marker(text: str) -> tuple[str, str]:
    """`export: features`, `export:features` and nbdev's `export features` all name a module."""
    text = text.strip()
    if text.lower().startswith(("block:", "step:", "prev:")):
        return text, ""
    for separator in (":", " "):
        if separator in text:
            word, _, argument = text.partition(separator)
            return word.strip(), argument.strip()
    return text, ""


def _near_role(word: str) -> str | None:
    candidates = list(ROLES) + list(ALIASES)
    for candidate in candidates:
        if _edit_distance(word, candidate) == 1:
            return ALIASES.get(candidate, candidate)
    return None


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps."""
    if abs(len(a) - len(b)) > 1:
        return 2
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[len(b)]
