"""Step 6: write a rendered tree atomically.

The new tree is written to a temporary folder beside the output and swapped in with two renames,
so a failed build leaves the previous output as it was. Files edited by hand since the last build
(their sha256 differs from nb2prod.json) are never overwritten without `force`; files a user
added to the output folder are carried over.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from nb2prod.errors import InputError, OutputConflict

MANIFEST = "nb2prod.json"
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


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


def _user_files(output: Path, manifest: dict) -> list[str]:
    known = set(manifest.get("files") or {}) | {MANIFEST}
    extra = []
    for root, dirs, names in os.walk(output):
        dirs[:] = sorted(d for d in dirs if d not in CACHE_NAMES and not d.endswith(".egg-info"))
        for name in sorted(names):
            relative = (Path(root) / name).relative_to(output).as_posix()
            if relative not in known:
                extra.append(relative)
    return extra


def write_tree(output: Path, files: dict[str, bytes], force: bool = False) -> bool:
    """Write `files` as the whole content of `output`; return False when nothing changed."""
    try:
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
            carried = _user_files(output, manifest)
            clash = [p for p in carried if p in files]
            if clash and not force:
                raise OutputConflict(
                    f"{output / clash[0]} was added by hand and a build now generates it; move it away, or rebuild with --force to overwrite it"
                )
            carried = [p for p in carried if p not in files]
            if not carried and _same_content(output, files, manifest):
                return False
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.nb2prod-new-", dir=output.parent))
    try:
        for path, data in sorted(files.items()):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        for path in carried:
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(output / path, target)
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
    retired = Path(tempfile.mkdtemp(prefix=f".{output.name}.nb2prod-old-", dir=output.parent))
    os.rmdir(retired)
    os.rename(output, retired)
    try:
        os.rename(staging, output)
    except BaseException:
        os.rename(retired, output)  # put the previous output back
        raise
    shutil.rmtree(retired, ignore_errors=True)
