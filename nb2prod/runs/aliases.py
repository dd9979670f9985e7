"""Named aliases (`production`, `staging`, ...) pointing at runs, with an append-only history.

Every alias is one small JSON file replaced atomically (written beside, fsynced, `os.replace`d),
so a crash leaves either the old or the new target, never a torn file. Changes are serialised by
an exclusive `fcntl` lock on `aliases/.lock`, so two promotes at once both land, one after the
other, and both appear in `aliases/history.jsonl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nb2prod.errors import InputError
from nb2prod.runs.errors import IntegrityError, PromotionRefused
from nb2prod.runs.ids import is_alias_name, utc_now_iso

if TYPE_CHECKING:
    from nb2prod.runs.store import RunStore

DEFAULT_ALIAS = "production"
HISTORY = "history.jsonl"
LOCK = ".lock"


@dataclass(frozen=True)
class AliasState:
    alias: str
    run_id: str
    previous: tuple[str, ...]  # earlier targets, most recent last; rollback pops from here
    updated_at: str
    updated_by: str


@dataclass(frozen=True)
class AliasChange:
    when: str
    who: str
    alias: str
    action: str  # "promote" | "rollback"
    from_run: str | None
    to_run: str

    def to_dict(self) -> dict[str, str | None]:
        data = asdict(self)
        data["from"] = data.pop("from_run")
        data["to"] = data.pop("to_run")
        return data


def current_user() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def check_alias_name(alias: str) -> str:
    if not is_alias_name(alias):
        raise InputError(
            f"alias {alias!r} is not a valid name: use a letter followed by letters, digits, '.', '_' or '-'."
        )
    return alias


class AliasStore:
    def __init__(self, store: "RunStore"):
        self.store = store
        self.folder = store.root / "aliases"

    # --- reading -----------------------------------------------------------------------
    def state(self, alias: str) -> AliasState | None:
        if not is_alias_name(alias):
            return None
        path = self.folder / f"{alias}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise IntegrityError(f"alias file {path} is not valid JSON ({exc}).") from None
        return AliasState(
            alias=data["alias"],
            run_id=data["run_id"],
            previous=tuple(data.get("previous", ())),
            updated_at=data.get("updated_at", ""),
            updated_by=data.get("updated_by", ""),
        )

    def target(self, alias: str) -> str | None:
        state = self.state(alias)
        return state.run_id if state else None

    def all(self) -> list[AliasState]:
        if not self.folder.is_dir():
            return []
        states = [self.state(p.stem) for p in sorted(self.folder.glob("*.json"))]
        return [s for s in states if s is not None]

    def aliases_of(self, run_id: str) -> list[str]:
        return sorted(s.alias for s in self.all() if s.run_id == run_id)

    def history(self, alias: str | None = None) -> list[AliasChange]:
        path = self.folder / HISTORY
        if not path.is_file():
            return []
        changes = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError:
                raise IntegrityError(f"{path}, line {number}: not valid JSON.") from None
            change = AliasChange(data["when"], data["who"], data["alias"], data["action"], data.get("from"), data["to"])
            if alias is None or change.alias == alias:
                changes.append(change)
        return changes

    # --- changing ----------------------------------------------------------------------
    def promote(self, ref: str, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point `alias` at the run `ref` names; refuse runs that did not succeed or were altered."""
        check_alias_name(alias)
        run = self.store.get(ref)
        if not run.manifest.succeeded:
            why = run.manifest.failure.describe() if run.manifest.failure else run.manifest.status
            raise PromotionRefused(
                f"run {run.run_id} cannot be promoted to {alias!r}: its status is {run.manifest.status} ({why})."
            )
        bad = self.store.verify(run)
        if bad:
            raise IntegrityError(
                f"run {run.run_id} cannot be promoted: {', '.join(bad)} no longer match the sha256 recorded in run.json."
            )
        with self._locked():
            old = self.state(alias)
            if old is not None and old.run_id == run.run_id:
                return AliasChange(utc_now_iso(), current_user(), alias, "promote", old.run_id, run.run_id)
            previous = (*old.previous, old.run_id) if old else ()
            return self._move(alias, "promote", old, run.run_id, previous)

    def rollback(self, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point `alias` back at the target it had before its latest promote."""
        check_alias_name(alias)
        with self._locked():
            old = self.state(alias)
            if old is None:
                raise InputError(f"alias {alias!r} does not exist in store {self.store.root}: promote a run first.")
            if not old.previous:
                raise InputError(
                    f"alias {alias!r} has no earlier target to roll back to (it points at {old.run_id}, its first promotion)."
                )
            target = old.previous[-1]
            if target not in self.store.run_ids():
                raise IntegrityError(
                    f"alias {alias!r} would roll back to run {target}, which is missing from the store."
                )
            return self._move(alias, "rollback", old, target, old.previous[:-1])

    def _move(
        self, alias: str, action: str, old: AliasState | None, run_id: str, previous: tuple[str, ...]
    ) -> AliasChange:
        change = AliasChange(utc_now_iso(), current_user(), alias, action, old.run_id if old else None, run_id)
        state = AliasState(alias, run_id, previous, change.when, change.who)
        _atomic_write(self.folder / f"{alias}.json", json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")
        _append_line(self.folder / HISTORY, json.dumps(change.to_dict(), sort_keys=True))
        return change

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
