"""The run store: one immutable folder per run, written elsewhere and renamed into place.

Layout of a store (default `runs/` beside the notebook):

    runs/
      20261130T133403Z-3f9a1c/   one folder per run, read-only once written (see `RUN_FILES`)
      aliases/                   production.json, ..., history.jsonl, .lock
      .staging/                  runs being written; never read as runs
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from nb2prod.runs.errors import IntegrityError, RunNotFound
from nb2prod.runs.hashing import iter_tree, sha256_file
from nb2prod.runs.ids import is_run_id, new_run_id
from nb2prod.runs.record import RunManifest

MANIFEST = "run.json"
STAGING = ".staging"
ALIASES = "aliases"

RUN_FILES = {
    "run.json": "the manifest: status, source, params, metrics, model, data, git, pins, timings",
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
    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()

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
        """Write run.json, make the folder read-only and rename it into the store."""
        if folder.parent != self.root / STAGING or folder.name != manifest.run_id:
            raise ValueError(f"{folder} is not a staging folder of {self.root}")
        (folder / MANIFEST).write_text(manifest.to_json())
        _freeze(folder)
        target = self.root / manifest.run_id
        if target.exists():  # never overwrite a run, even an empty leftover folder
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
        runs = [self.load(run_id) for run_id in self.run_ids()]
        return sorted(runs, key=lambda r: (r.manifest.timings.started_at, r.run_id))

    def load(self, run_id: str) -> StoredRun:
        path = self.root / run_id
        try:
            manifest = RunManifest.read(path / MANIFEST)
        except FileNotFoundError:
            raise RunNotFound(f"run {run_id} has no {MANIFEST} in store {self.root}.") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise IntegrityError(f"{path / MANIFEST} is not a valid run manifest ({exc}).") from None
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

    def verify(self, run: StoredRun) -> list[str]:
        """Relative paths whose content no longer matches the manifest (empty when intact)."""
        bad = []
        for rel, digest in sorted(run.manifest.files.items()):
            path = run.path / rel
            if not path.is_file() or sha256_file(path) != digest:
                bad.append(rel)
        return bad


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def file_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in iter_tree(folder) if p.name != MANIFEST}


_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def _freeze(folder: Path) -> None:
    """Files 0444, sub-folders 0555: a finished run is not edited in place by accident."""
    for current, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            path = os.path.join(current, name)
            if not os.path.islink(path):
                os.chmod(path, _READ_ONLY_FILE)
                _fsync_file(path)
        if current != str(folder):
            os.chmod(current, _READ_ONLY_DIR)


def _thaw(folder: Path) -> None:
    for current, dirs, files in os.walk(folder):
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
