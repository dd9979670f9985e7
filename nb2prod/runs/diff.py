"""What differs between two runs: parameters, metrics, code, data, package pins, git, model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
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


def model_content_digest(path: Path, fmt: str) -> str | None:
    """A digest of what a model file holds, not of how the archive was written.

    A skops file is a zip archive whose entries carry the time of writing and are named after
    object ids; its digest renumbers the ids in order of appearance and names each array by the
    sha256 of its bytes. Other formats: the file's sha256. None when the file cannot be read.
    """
    import zipfile

    try:
        if fmt != "skops":
            return hashlib.sha256(path.read_bytes()).hexdigest()
        with zipfile.ZipFile(path) as archive:
            members = {name: hashlib.sha256(archive.read(name)).hexdigest() for name in archive.namelist()}
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    ids: dict[Any, int] = {}

    def canonical(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "__id__":
                    value = ids.setdefault(value, len(ids))
                elif isinstance(value, str) and value in members and value != "schema.json":
                    value = members[value]
                else:
                    value = canonical(value)
                out[key] = value
            return out
        if isinstance(node, list):
            return [canonical(item) for item in node]
        return node

    text = json.dumps(canonical(schema), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _model_fields(manifest: RunManifest, folder: Path | None) -> dict[str, Any]:
    if manifest.model is None:
        return {}
    fields: dict[str, Any] = {"format": manifest.model.format, "type": manifest.model.type}
    digest = model_content_digest(folder / manifest.model.file, manifest.model.format) if folder else None
    # equal contents are an equal model, however the archive was written; else the file hashes
    fields["contents" if digest else "sha256"] = digest or manifest.model.sha256
    return fields


def diff_runs(a: RunManifest, b: RunManifest, folders: tuple[Path | None, Path | None] = (None, None)) -> RunDiff:
    """What differs between runs `a` and `b`; with their folders, models are compared by content."""
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
    if folders[0] is not None and folders[1] is not None:
        model_a, model_b = _model_fields(a, folders[0]), _model_fields(b, folders[1])
        if ("contents" in model_a) != ("contents" in model_b):  # one unreadable: compare the files
            model_a, model_b = _model_fields(a, None), _model_fields(b, None)
    else:
        model_a, model_b = _model_fields(a, None), _model_fields(b, None)
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
