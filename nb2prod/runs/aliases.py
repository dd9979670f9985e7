"""Named aliases (`production`, `staging`, ...) pointing at runs, with an append-only history.

Every alias is one small JSON file replaced atomically (written beside, fsynced, `os.replace`d),
so a crash leaves either the old or the new target, never a torn file. Changes are serialised by
an exclusive `filelock` lock on `aliases/.lock` (portable beyond POSIX), so two promotes at once both land, one after the
other, and both appear in `aliases/history.jsonl`.

Each change is a transaction with an id (`txid`), written history first:
1. `{"state": "intent", "txid": T, "action", "alias", "from", "to", "when", "who"}` is appended;
2. the alias file is replaced, recording `"txid": T`;
3. `{"state": "completed", "txid": T}` is appended.
A process killed between the steps leaves an intent without an outcome. The next change (under
the lock) reconciles it before doing anything else: completed when the alias file records T,
aborted otherwise, and appends that outcome; readers (under the same lock, held only while they read) judge it the same way.
So the history always agrees with the aliases, and no change is ever missing from it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2prod.errors import InputError
from nb2prod.runs.errors import IntegrityError, PromotionRefused, StoreWarning
from nb2prod.runs.ids import is_alias_name, is_run_id, utc_now_iso

if TYPE_CHECKING:
    from nb2prod.runs.store import RunStore, StoredRun

DEFAULT_ALIAS = "production"
HISTORY = "history.jsonl"
LOCK = ".lock"
INTENT, COMPLETED, ABORTED = "intent", "completed", "aborted"


@dataclass(frozen=True)
class AliasState:
    alias: str
    run_id: str
    previous: tuple[str, ...]  # earlier targets, most recent last; rollback pops from here
    updated_at: str
    updated_by: str
    txid: str | None = None  # the transaction that wrote this state (None: written by an older nb2prod)


@dataclass(frozen=True)
class AliasChange:
    when: str
    who: str
    alias: str
    action: str  # "promote" | "rollback"
    from_run: str | None
    to_run: str
    txid: str | None = None
    status: str = COMPLETED  # "completed" | "aborted" (a change killed before its alias was written)

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
            f"alias {alias!r} is not a valid name: use a letter followed by up to 63 letters, digits, "
            "'.', '_' or '-' (no '..')."
        )
    return alias


def promotion_problem(store: "RunStore", run: "StoredRun") -> str | None:
    """Why `run` cannot be the target of an alias (None when it can): its record must be complete
    (a source package, a model, status succeeded) and the whole folder must pass verification."""
    manifest = run.manifest
    if not manifest.succeeded:
        why = manifest.failure.describe() if manifest.failure else manifest.status
        return f"its status is {manifest.status} ({why})"
    if manifest.source is None or not getattr(manifest.source, "package", None):
        return 'its run.json records no source ("source" is null), so its package code cannot be loaded'
    if manifest.model is None or not getattr(manifest.model, "file", None):
        return "its run.json records no model"
    if manifest.model.file not in manifest.files:
        return f"its model file {manifest.model.file} is not among the files its run.json records"
    return None


class AliasStore:
    def __init__(self, store: "RunStore"):
        self.store = store
        self.folder = store.root / "aliases"

    # --- reading -----------------------------------------------------------------------
    def state(self, alias: str) -> AliasState | None:
        """The alias's state, None when it does not exist; IntegrityError names an unreadable file."""
        if not is_alias_name(alias):
            return None
        path = self.folder / f"{alias}.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:
            raise IntegrityError(f"alias file {path} is not valid JSON ({exc}).") from None
        try:
            state = AliasState(
                alias=data["alias"],
                run_id=data["run_id"],
                previous=tuple(data.get("previous", ())),
                updated_at=data.get("updated_at", ""),
                updated_by=data.get("updated_by", ""),
                txid=data.get("txid"),
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise IntegrityError(f"alias file {path} is not an alias record (missing or wrong {exc}).") from None
        if state.alias != alias:
            raise IntegrityError(f"alias file {path} records alias {state.alias!r}, not {alias!r}.")
        for run_id in (state.run_id, *state.previous):
            if not is_run_id(run_id):
                raise IntegrityError(f"alias file {path} names {run_id!r}, which is not a run id.")
        return state

    def target(self, alias: str) -> str | None:
        state = self.state(alias)
        return state.run_id if state else None

    def all(self) -> list[AliasState]:
        """Every readable alias; an unreadable alias file is skipped with a StoreWarning."""
        if not self.folder.is_dir():
            return []
        states = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                state = self.state(path.stem)
            except IntegrityError as exc:
                warnings.warn(f"skipped alias {path.stem}: {exc.message}", StoreWarning, stacklevel=2)
                continue
            if state is not None:
                states.append(state)
        return states

    def aliases_of(self, run_id: str) -> list[str]:
        return sorted(s.alias for s in self.all() if s.run_id == run_id)

    def history(self, alias: str | None = None) -> list[AliasChange]:
        """Every change, oldest first; one killed before it finished is shown completed or aborted,
        by what its alias file records. Unreadable lines are skipped with a StoreWarning."""
        with self._locked(shared=True):
            changes = self._changes()
        return [c for c in changes if alias is None or c.alias == alias]

    def _entries(self) -> list[dict[str, Any]]:
        path = self.folder / HISTORY
        try:
            text = path.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            warnings.warn(f"skipped the alias history {path}: it cannot be read ({exc}).", StoreWarning, stacklevel=3)
            return []
        entries = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                if "action" in data:  # a change; lines written before transactions have no state
                    data = {**data, "state": data.get("state") or COMPLETED}
                    _change_from(data)
                elif not isinstance(data.get("txid"), str) or data.get("state") not in (COMPLETED, ABORTED):
                    raise ValueError("neither a change nor the outcome of one")
            except (ValueError, TypeError, KeyError, RecursionError):
                warnings.warn(f"skipped {path}, line {number}: not a history entry.", StoreWarning, stacklevel=3)
                continue
            entries.append(data)
        return entries

    def _changes(self) -> list[AliasChange]:
        entries = self._entries()
        outcomes = {e["txid"]: e["state"] for e in entries if "action" not in e}
        changes = []
        for entry in entries:
            if "action" not in entry:
                continue
            change = _change_from(entry)
            if entry["state"] == INTENT:
                status = outcomes.get(change.txid) or self._judge(change)
                change = replace(change, status=status)
            changes.append(change)
        return changes

    def _judge(self, change: AliasChange) -> str:
        """The outcome of an unfinished change: completed if its alias file records its transaction."""
        try:
            state = self.state(change.alias)
        except IntegrityError:
            return ABORTED
        return COMPLETED if state is not None and state.txid == change.txid else ABORTED

    # --- changing ----------------------------------------------------------------------
    def promote(self, ref: str, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point `alias` at the run `ref` names; refuse runs that are incomplete, did not succeed or were altered."""
        check_alias_name(alias)
        run = self.store.get(ref)
        problem = promotion_problem(self.store, run)
        if problem:
            raise PromotionRefused(f"run {run.run_id} cannot be promoted to {alias!r}: {problem}.")
        try:
            self.store.verify(run)
        except IntegrityError as exc:
            raise IntegrityError(f"run {run.run_id} cannot be promoted to {alias!r}: {exc.message}") from None
        with self._locked():
            self._reconcile()
            old = self.state(alias)
            if old is not None and old.run_id == run.run_id:
                return AliasChange(utc_now_iso(), current_user(), alias, "promote", old.run_id, run.run_id)
            previous = (*old.previous, old.run_id) if old else ()
            return self._move(alias, "promote", old, run.run_id, previous)

    def rollback(self, alias: str = DEFAULT_ALIAS) -> AliasChange:
        """Point `alias` back at the target it had before its latest promote."""
        check_alias_name(alias)
        with self._locked():
            self._reconcile()
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
            try:
                self.store.verify(self.store.load(target))
            except IntegrityError as exc:
                raise IntegrityError(f"alias {alias!r} cannot roll back to run {target}: {exc.message}") from None
            return self._move(alias, "rollback", old, target, old.previous[:-1])

    def _reconcile(self) -> None:
        """Under the exclusive lock: write the outcome of every change a killed process left unfinished."""
        history = self.folder / HISTORY
        _repair_last_line(history)
        for leftover in self.folder.glob(".*.json.*.tmp"):  # alias files a killed writer did not finish
            leftover.unlink(missing_ok=True)
        entries = self._entries()
        decided = {e["txid"] for e in entries if "action" not in e}
        for entry in entries:
            if "action" in entry and entry["state"] == INTENT and entry.get("txid") not in decided:
                change = _change_from(entry)
                _append_line(history, json.dumps(_outcome(entry["txid"], self._judge(change)), sort_keys=True))

    def _move(
        self, alias: str, action: str, old: AliasState | None, run_id: str, previous: tuple[str, ...]
    ) -> AliasChange:
        txid = secrets.token_hex(8)
        change = AliasChange(
            utc_now_iso(), current_user(), alias, action, old.run_id if old else None, run_id, txid, INTENT
        )
        history = self.folder / HISTORY
        line = {**change.to_dict(), "state": INTENT}
        del line["status"]  # an entry's "state" is what it records; the status of a change is derived
        _append_line(history, json.dumps(line, sort_keys=True))
        state = AliasState(alias, run_id, previous, change.when, change.who, txid)
        _atomic_write(self.folder / f"{alias}.json", json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")
        _append_line(history, json.dumps(_outcome(txid, COMPLETED), sort_keys=True))
        return replace(change, status=COMPLETED)

    @contextlib.contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        """The store's alias lock, for changes and for reading the history (`shared`), so a reader
        never sees a change in progress as unfinished. One exclusive lock serves both: `filelock`
        has no portable shared lock, and a read holds it only while it reads the history file.
        A store whose lock cannot be opened (read-only) is read without a lock."""
        from filelock import FileLock

        if shared:
            if not (self.folder / LOCK).exists():
                yield  # nothing was ever changed under a lock here: no change can be in progress
                return
            lock = FileLock(self.folder / LOCK)
            try:
                lock.acquire()
            except OSError:
                yield
                return
            try:
                yield
            finally:
                lock.release()
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(self.folder / LOCK):
            yield


def _change_from(entry: dict[str, Any]) -> AliasChange:
    fields = (entry["when"], entry["who"], entry["alias"], entry["action"], entry.get("from"), entry["to"])
    if not all(isinstance(v, str) for v in fields[:4]) or not isinstance(fields[5], str):
        raise TypeError("history entry fields must be text")
    return AliasChange(*fields, txid=entry.get("txid"), status=entry.get("state") or COMPLETED)


def _outcome(txid: str, status: str) -> dict[str, str]:
    return {"txid": txid, "state": status, "when": utc_now_iso()}


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


def _repair_last_line(path: Path) -> None:
    """Under the exclusive lock: end a last line a killed writer left without its newline (dropping it
    when it is not a whole JSON value, so it cannot glue itself to the next entry)."""
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return
            start = data.rfind(b"\n") + 1
            try:
                json.loads(data[start:])
            except ValueError:
                handle.truncate(start)
            else:
                handle.seek(0, os.SEEK_END)
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    except FileNotFoundError:
        return
