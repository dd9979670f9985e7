"""The run store: one immutable folder per run, written elsewhere and renamed into place.

Layout of a store (default `runs/` beside the notebook):

    runs/
      20261130T133403Z-3f9a1c/   one folder per run, read-only once written (see `RUN_FILES`)
      aliases/                   production.json, ..., history.jsonl, .lock
      .staging/                  runs being written; never read as runs

A run is trusted only as a whole: `RunStore.verify` checks every file and folder of the run against
the sha256 map in its run.json (nothing missing, changed, added, or a symbolic link) and, when a
signing key is configured, the run.json.sig beside it. The folder check is the one in
`nb2prod/runtime.py`, which generated packages ship, so both refuse exactly the same runs.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import socket
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from nb2prod import runtime
from nb2prod.runs.errors import IntegrityError, RunNotFound, StoreWarning
from nb2prod.runs.hashing import sha256_file
from nb2prod.runs.ids import is_run_id, new_run_id
from nb2prod.runs.record import RunManifest, Timings
from nb2prod.runs.signing import resolve_signing_key

MANIFEST = runtime.RUN_RECORD
SIGNATURE = runtime.RUN_SIGNATURE
STAGING = ".staging"
ALIASES = "aliases"

RUN_FILES = {
    "run.json": "the manifest: status, source, params, metrics, model, data, git, pins, timings",
    "run.json.sig": "HMAC-SHA256 of run.json, when a signing key is configured (see docs/security.md)",
    "params.json": "the parameters the job ran with (defaults plus overrides)",
    "metrics.json": "the `metrics` dict bound by the metrics cells",
    "contract.json": "feature names, dtypes and example rows of what the model was fitted on",
    "model/": "the model artifact and its .sha256",
    "baseline.json": "distributions of the inputs, features and scores the run is judged against (drift)",
    "notebook.ipynb": "the executed job notebook (papermill engine)",
    "output.log": "stdout and stderr of the job (python engine)",
    "environment.txt": "installed package pins, name==version",
    "code/": "snapshot of the build's src/ and nb2prod.json the run was trained from",
}


@dataclass(frozen=True)
class StoredRun:
    path: Path
    manifest: RunManifest

    @property
    def run_id(self) -> str:
        return self.manifest.run_id


class RunStore:
    """A folder of runs. `signing_key`: the HMAC key that signs new runs and that every run must be
    signed with; None takes it from `$NB2PROD_SIGNING_KEY` / `$NB2PROD_SIGNING_KEY_FILE` (when
    neither is set, runs are neither signed nor required to be)."""

    def __init__(self, root: Path | str, signing_key: bytes | None = None):
        self.root = Path(root).absolute()
        self._signing_key = signing_key
        self._key_resolved = signing_key is not None

    @property
    def signing_key(self) -> bytes | None:
        if not self._key_resolved:
            self._signing_key = resolve_signing_key()
            self._key_resolved = True
        return self._signing_key

    # --- writing -----------------------------------------------------------------------
    def staging_dir(self) -> tuple[str, Path]:
        """A fresh run id and an empty folder to write the run into.

        Beside each staging folder, `ID.owner` names the host and process writing it, so folders
        left by a process that died (killed, power loss) are removed by the next run on that host.
        """
        staging = self.root / STAGING
        staging.mkdir(parents=True, exist_ok=True)
        self._remove_orphans(staging)
        while True:
            run_id = new_run_id()
            if (self.root / run_id).exists():
                continue
            folder = staging / run_id
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            (staging / f"{run_id}.owner").write_text(f"{socket.gethostname()} {os.getpid()}\n")
            return run_id, folder

    def _remove_orphans(self, staging: Path) -> None:
        host = socket.gethostname()
        for owner in staging.glob("*.owner"):
            try:
                owner_host, pid = owner.read_text().split()
            except (OSError, ValueError):
                continue
            if owner_host != host or _process_alive(int(pid)):
                continue
            self.discard(staging / owner.name[: -len(".owner")])

    def commit(self, folder: Path, manifest: RunManifest) -> StoredRun:
        """Write run.json (and run.json.sig when a key is set), check the folder against it, make it
        read-only and rename it into the store: a run is visible whole or not at all."""
        if folder.parent != self.root / STAGING or folder.name != manifest.run_id or not is_run_id(folder.name):
            raise ValueError(f"{folder} is not a staging folder of {self.root}")
        target = self.root / manifest.run_id
        if target.exists() or target.is_symlink():  # never overwrite a run, even an empty leftover folder
            raise FileExistsError(f"run folder {target} already exists")
        record = manifest.to_json().encode("utf-8")
        (folder / MANIFEST).write_bytes(record)
        key = self.signing_key
        if key is not None:
            (folder / SIGNATURE).write_text(runtime.sign_record(record, key))
        problems = runtime.run_folder_problems(folder, manifest.files)
        if problems:
            raise IntegrityError(f"run {manifest.run_id} cannot be recorded: {problems[0]}.")
        _freeze(folder)
        if target.exists() or target.is_symlink():  # never overwrite a run, even an empty leftover folder
            raise FileExistsError(f"run folder {target} already exists")
        os.rename(folder, target)  # the top folder stays writable until here: moving a folder needs it
        (folder.parent / f"{folder.name}.owner").unlink(missing_ok=True)
        os.chmod(target, _READ_ONLY_DIR)
        _fsync_dir(self.root)
        return StoredRun(target, manifest)

    def discard(self, folder: Path) -> None:
        """Remove a staging folder (never a committed run)."""
        if folder.parent != self.root / STAGING:
            return
        if folder.exists():
            _thaw(folder)
            shutil.rmtree(folder, ignore_errors=True)
        (folder.parent / f"{folder.name}.owner").unlink(missing_ok=True)

    # --- reading -----------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if is_run_id(p.name) and (p / MANIFEST).is_file())

    def list(self) -> list[StoredRun]:
        """Every readable run, oldest first; an unreadable run.json is skipped with a StoreWarning."""
        runs = []
        for run_id in self.run_ids():
            try:
                runs.append(self.load(run_id))
            except IntegrityError as exc:
                warnings.warn(f"skipped run {run_id}: {exc.message}", StoreWarning, stacklevel=2)
        return sorted(runs, key=lambda r: (r.manifest.timings.started_at, r.run_id))

    def load(self, run_id: str) -> StoredRun:
        if not is_run_id(run_id):
            raise RunNotFound(f"{run_id!r} is not a run id.")
        path = self.root / run_id
        try:
            manifest = RunManifest.read(path / MANIFEST)
        except FileNotFoundError:
            raise RunNotFound(f"run {run_id} has no {MANIFEST} in store {self.root}.") from None
        except AttributeError:  # valid JSON, but not an object
            raise IntegrityError(f"{path / MANIFEST} is not a valid run manifest (expected a JSON object).") from None
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            raise IntegrityError(f"{path / MANIFEST} is not a valid run manifest ({exc}).") from None
        problem = _manifest_problem(manifest, run_id)
        if problem:
            raise IntegrityError(f"{path / MANIFEST} is not a valid run manifest: {problem}.")
        return StoredRun(path, manifest)

    def resolve(self, ref: str) -> str:
        """A run id, a unique prefix of one, or an alias name → the run id."""
        ids = self.run_ids()
        if ref in ids:
            return ref
        from nb2prod.runs.aliases import AliasStore

        target = AliasStore(self).target(ref)
        if target is not None:
            if target not in ids:
                raise RunNotFound(f"alias {ref!r} points at run {target}, which is missing from store {self.root}.")
            return target
        matches = [run_id for run_id in ids if run_id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise RunNotFound(f"run {ref!r} is ambiguous in store {self.root}: it starts {len(matches)} run ids.")
        if not self.root.is_dir():
            raise RunNotFound(f"run {ref!r} not found: the store {self.root} does not exist (pass --store DIR).")
        raise RunNotFound(f"run {ref!r} not found in store {self.root}: no run id, id prefix or alias matches.")

    def get(self, ref: str) -> StoredRun:
        return self.load(self.resolve(ref))

    def problems(self, run: StoredRun) -> builtins.list[str]:
        """Every way the run folder differs from its run.json, signature first (empty when intact)."""
        return runtime.run_problems(run.path, run.manifest.to_dict(), self.signing_key)

    def verify(self, run: StoredRun) -> None:
        """Refuse a run whose folder does not match its run.json, or, with a signing key configured,
        whose run.json.sig is missing or wrong: IntegrityError names the first offending path."""
        problems = self.problems(run)
        if problems:
            more = (
                f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
                if len(problems) > 1
                else ""
            )
            raise IntegrityError(f"run {run.run_id} failed verification: {problems[0]}{more}.")


def _manifest_problem(manifest: RunManifest, run_id: str) -> str | None:
    """What makes a parsed run.json unusable as a record of the run in folder `run_id`."""
    if manifest.run_id != run_id:
        return f"it records run id {manifest.run_id!r}, not {run_id}"
    if not isinstance(manifest.status, str):
        return "its status is not text"
    if not isinstance(manifest.timings, Timings) or not isinstance(manifest.timings.started_at, str):
        return "it records no timings"
    if not isinstance(manifest.files, dict):
        return "its files are not a mapping of paths to sha256"
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file under a run folder (all but run.json and run.json.sig), nothing skipped."""
    digests = {}
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(current, name)
            rel = path.relative_to(folder).as_posix()
            if rel not in (MANIFEST, SIGNATURE):
                digests[rel] = sha256_file(path)
    return digests


_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def _freeze(folder: Path) -> None:
    """Files 0444, sub-folders 0555: a finished run is not edited in place by accident."""
    for current, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, _READ_ONLY_FILE)
                _fsync_file(path)
        if current != str(folder):
            os.chmod(current, _READ_ONLY_DIR)


def _thaw(folder: Path) -> None:
    for current, _dirs, files in os.walk(folder):
        os.chmod(current, 0o755)
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
