"""What differs between two runs: parameters, metrics, code, data, package pins, git, model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nb2prod.runs.record import RunManifest

MISSING = "(absent)"


@dataclass(frozen=True)
class Change:
    key: str
    a: Any
    b: Any


@dataclass(frozen=True)
class RunDiff:
    run_a: str
    run_b: str
    sections: dict[str, tuple[Change, ...]] = field(default_factory=dict)

    @property
    def same(self) -> bool:
        return not any(self.sections.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.run_a,
            "b": self.run_b,
            "same": self.same,
            **{name: {c.key: {"a": c.a, "b": c.b} for c in changes} for name, changes in self.sections.items()},
        }

    def render(self) -> str:
        lines = [f"a: {self.run_a}", f"b: {self.run_b}"]
        if self.same:
            lines.append("no differences in params, metrics, code, data, pins, git or model")
        for name, changes in self.sections.items():
            if not changes:
                continue
            lines.append(f"{name}:")
            width = max(len(c.key) for c in changes)
            for c in changes:
                lines.append(f"  {c.key.ljust(width)}  {_show(c.a)}  ->  {_show(c.b)}")
        return "\n".join(lines)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value):
        return value[:12]
    return str(value)


def _compare(a: dict[str, Any], b: dict[str, Any]) -> tuple[Change, ...]:
    return tuple(
        Change(key, a.get(key, MISSING), b.get(key, MISSING))
        for key in sorted(set(a) | set(b))
        if a.get(key, MISSING) != b.get(key, MISSING)
    )


def _pins(pins: tuple[str, ...]) -> dict[str, str]:
    result = {}
    for pin in pins:
        name, _, version = pin.partition("==")
        result[name.lower()] = version
    return result


def diff_runs(a: RunManifest, b: RunManifest) -> RunDiff:
    code_a = {
        "code_sha256": a.source.code_sha256,
        "notebook_sha256": a.source.notebook_sha256,
        "package": a.source.name,
    }
    code_b = {
        "code_sha256": b.source.code_sha256,
        "notebook_sha256": b.source.notebook_sha256,
        "package": b.source.name,
    }
    data_a = {f"{d.parameter}:{d.path}": d.sha256 for d in a.data}
    data_b = {f"{d.parameter}:{d.path}": d.sha256 for d in b.data}
    git_a = {"commit": a.git.commit, "dirty": a.git.dirty} if a.git else {}
    git_b = {"commit": b.git.commit, "dirty": b.git.dirty} if b.git else {}
    model_a = {"sha256": a.model.sha256, "format": a.model.format, "type": a.model.type} if a.model else {}
    model_b = {"sha256": b.model.sha256, "format": b.model.format, "type": b.model.type} if b.model else {}
    run_a = {"status": a.status, "engine": a.engine, "python": a.python}
    run_b = {"status": b.status, "engine": b.engine, "python": b.python}
    sections = {
        "params": _compare(a.params, b.params),
        "metrics": _compare(a.metrics, b.metrics),
        "code": _compare(code_a, code_b),
        "data": _compare(data_a, data_b),
        "pins": _compare(_pins(a.pins), _pins(b.pins)),
        "git": _compare(git_a, git_b),
        "model": _compare(model_a, model_b),
        "run": _compare(run_a, run_b),
    }
    return RunDiff(a.run_id, b.run_id, sections)
