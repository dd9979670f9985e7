"""Step 6: write a rendered tree atomically.

The new tree is written to a staging folder beside the output and swapped in with two renames
(output -> retired, staging -> output), so a failed build leaves the previous output as it was.
Files edited by hand since the last build (their sha256 differs from nb2prod.json) are never
overwritten without `force`; everything a user added to the output folder (files, symlinks, empty
folders, a venv) is carried over exactly as it was: hard links to the same files, symlinks as
symlinks, folders with their modes and times.

Every write holds an exclusive lock on the output (`output_lock`: a `filelock` lock file
`.NAME.lock` beside the output, portable beyond POSIX), which the CLI and the Jupyter server both
take through `write_tree` (and `nb2prod build` for the whole build, image included), so two builds
of one output never interleave. Under the
lock, `recover_output` first repairs what a killed build left: killed between the two renames, the
previous output is put back from the retired folder; leftover staging and retired folders of a
finished swap are removed (they hold only links and copies).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from nb2prod.errors import InputError, OutputConflict

MANIFEST = "nb2prod.json"
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
STAGING = "nb2prod-new-"
RETIRED = "nb2prod-old-"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(output: Path) -> dict | None:
    try:
        return json.loads((output / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def hand_edits(output: Path, manifest: dict) -> list[str]:
    """Files recorded in the manifest whose content no longer matches it."""
    edited = []
    for path, digest in sorted((manifest.get("files") or {}).items()):
        target = output / path
        if target.is_file() and sha256_bytes(target.read_bytes()) != digest:
            edited.append(path)
    return edited


def _parents(paths: set[str]) -> set[str]:
    """Every folder that holds one of `paths` ("" is the output folder itself)."""
    folders = {""}
    for path in paths:
        parts = PurePosixPath(path).parts[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return folders


def _user_entries(output: Path, manifest: dict, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """What a user added to the output: (files, symlinks and other non-folders; folders that
    are not generated folders), relative paths. Caches of generated code (`__pycache__` beside
    generated modules, `*.egg-info` of the package) are left behind; caches elsewhere (in a venv)
    are the user's."""
    known = set(manifest.get("files") or {}) | {MANIFEST}
    generated_folders = _parents(known | set(files))
    entries: list[str] = []
    folders: list[str] = []
    for root, dirs, names in os.walk(output, onerror=_raise):
        here = Path(root).relative_to(output).as_posix()
        here = "" if here == "." else here
        keep = []
        for name in sorted(dirs):
            relative = f"{here}/{name}" if here else name
            if os.path.islink(os.path.join(root, name)):
                entries.append(relative)  # a symlink to a folder is carried as a symlink
            elif here in generated_folders and (name in CACHE_NAMES or name.endswith(".egg-info")):
                continue
            else:
                keep.append(name)
                if relative not in generated_folders:
                    folders.append(relative)
        dirs[:] = keep
        for name in sorted(names):
            relative = f"{here}/{name}" if here else name
            if relative not in known:
                entries.append(relative)
    return entries, folders


def _raise(error: OSError) -> None:
    raise error  # a folder that cannot be read cannot be carried over: stop rather than lose it


def _carry(source: Path, target: Path) -> None:
    """Put the user's `source` at `target` as it is: a hard link (same file), else a copy that
    keeps a symlink a symlink (even a dangling one) and a file's mode and times."""
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except OSError:
        pass
    info = os.lstat(source)
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(info.st_mode):
        shutil.copy2(source, target, follow_symlinks=False)
    elif stat.S_ISFIFO(info.st_mode):
        os.mkfifo(target, stat.S_IMODE(info.st_mode))
    # a socket belongs to a running process and cannot be carried; it ends with the process


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


LOCK_SUFFIX = ".lock"


def lock_path(output: Path) -> Path:
    """The lock file of `output`: `.NAME.lock` beside it (kept: removing it would race)."""
    return output.parent / f".{output.name}{LOCK_SUFFIX}"


@contextlib.contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """An exclusive lock for writing `output`, held by every build, CLI or Jupyter server, across
    processes and threads; re-entrant within a thread (a build holding it may write the tree)."""
    from filelock import FileLock

    output = Path(os.path.abspath(output))
    output.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(output)
    # filelock waits forever on a lock file it cannot create (it takes that for "held"): a folder
    # nobody may write in is refused here, with the OSError the caller reports for the output
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o644))
    with FileLock(path, is_singleton=True):
        yield


def _leftovers(output: Path, kind: str) -> list[Path]:
    pattern = f".{glob.escape(output.name)}.{kind}*"
    return sorted(output.parent.glob(pattern), key=lambda p: os.lstat(p).st_mtime_ns)


def recover_output(output: Path) -> str | None:
    """Repair what a build killed while writing `output` left (call it holding `output_lock`);
    return what was done, or None. Never deletes the only copy of anything."""
    retired = [p for p in _leftovers(output, RETIRED) if p.is_dir() and not p.is_symlink()]
    staging = [p for p in _leftovers(output, STAGING) if p.is_dir() and not p.is_symlink()]
    done = None
    if not _lexists(output):
        full = [p for p in retired if any(p.iterdir())]
        if full:
            # killed between the two renames: the retired folder is the complete previous output
            os.rename(full[-1], output)
            retired.remove(full[-1])
            done = f"restored the previous output of {output} that an interrupted build had set aside"
    if _lexists(output):
        # the output is complete (old or new): retired folders of finished swaps hold only the old
        # generated files and links or copies of user files that the output holds too
        for folder in retired:
            shutil.rmtree(folder, ignore_errors=True)
    for folder in staging:
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished new tree: generated files and links
    return done


def write_tree(output: Path, files: dict[str, bytes], force: bool = False) -> bool:
    """Write `files` as the whole content of `output`; return False when nothing changed."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(output):
            recover_output(output)
            return _write_tree(output, files, force)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"cannot write the output folder {output}: {reason}") from None


def _write_tree(output: Path, files: dict[str, bytes], force: bool) -> bool:
    for path in files:
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"refusing to write outside the output folder: {path}")
    carried: list[str] = []
    folders: list[str] = []
    if os.path.islink(output) and not output.exists():
        raise OutputConflict(f"the output {output} is a dangling symlink; remove it or choose another folder with -o")
    if output.exists():
        if not output.is_dir():
            raise OutputConflict(f"the output {output} is a file, not a folder; choose another with -o")
        manifest = read_manifest(output)
        if manifest is None:
            if any(output.iterdir()):
                raise OutputConflict(
                    f"the output folder {output} exists and was not written by nb2prod (it has no {MANIFEST}); remove it or choose another with -o"
                )
        else:
            edited = hand_edits(output, manifest)
            if edited and not force:
                more = f" (and {len(edited) - 1} more)" if len(edited) > 1 else ""
                raise OutputConflict(
                    f"{output / edited[0]} was edited by hand since the last build{more}; move the change into the notebook, or rebuild with --force to overwrite it"
                )
            if _same_content(output, files, manifest):
                return False  # nothing to write; what the user added stays where it is
            carried, folders = _user_entries(output, manifest, files)
            generated_folders = _parents(set(files))
            clash = [p for p in carried if p in files or p in generated_folders] + [d for d in folders if d in files]
            if clash and not force:
                raise OutputConflict(
                    f"{output / clash[0]} was added by hand and a build now generates it; move it away, or rebuild with --force to overwrite it"
                )
            carried = [p for p in carried if p not in clash]
            folders = [d for d in folders if d not in clash and not any(d.startswith(f"{c}/") for c in clash)]
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.{STAGING}", dir=output.parent))
    try:
        for path, data in sorted(files.items()):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for folder in folders:
            (staging / folder).mkdir(parents=True, exist_ok=True)
        for path in carried:
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            _carry(output / path, target)
        for folder in sorted(folders, key=lambda f: -f.count("/")):  # innermost first: times stay as they were
            shutil.copystat(output / folder, staging / folder, follow_symlinks=False)
        if output.exists():
            shutil.copystat(output, staging)  # the output folder keeps its mode
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(staging, 0o777 & ~umask)
        _swap(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def _same_content(output: Path, files: dict[str, bytes], manifest: dict) -> bool:
    recorded = manifest.get("files") or {}
    if set(recorded) | {MANIFEST} != set(files):
        return False
    for path, data in files.items():
        target = output / path
        try:
            if target.read_bytes() != data:
                return False
        except OSError:
            return False
    return True


def _swap(staging: Path, output: Path) -> None:
    if not output.exists():
        os.rename(staging, output)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.{RETIRED}", dir=output.parent))
    os.rmdir(retired)
    os.rename(output, retired)
    try:
        os.rename(staging, output)
    except BaseException:
        os.rename(retired, output)  # put the previous output back
        raise
    shutil.rmtree(retired, ignore_errors=True)
