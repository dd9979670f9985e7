"""Where a run came from: git state of the notebook's repo, installed packages, input data."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from nb2prod.runs.hashing import sha256_file, sha256_tree
from nb2prod.runs.record import DataInput, GitInfo


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_info(folder: Path) -> GitInfo | None:
    """Commit, branch and dirty flag of the repository holding `folder`; None outside git."""
    root = _git(["rev-parse", "--show-toplevel"], folder)
    if root is None:
        return None
    commit = _git(["rev-parse", "--verify", "-q", "HEAD"], folder) or None
    status = _git(["status", "--porcelain", "--untracked-files=normal"], folder)
    branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], folder)
    return GitInfo(root=root, commit=commit, dirty=bool(status), branch=branch if branch != "HEAD" else None)


def installed_pins() -> tuple[str, ...]:
    """`name==version` of every distribution on sys.path, sorted by normalised name.

    Read from the `*.dist-info` / `*.egg-info` folder names (what `importlib.metadata` would find,
    the first on sys.path winning) rather than by parsing each METADATA file: ten times faster.
    """
    pins: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in sorted(names):
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            parts = name.rsplit(".", 1)[0].split("-")
            if len(parts) < 2:
                continue
            canonical = re.sub(r"[-_.]+", "-", parts[0]).lower()
            pins.setdefault(canonical, f"{canonical}=={parts[1]}")
    if not pins:  # an unusual layout (zipped eggs...): ask importlib.metadata
        for dist in metadata.distributions():
            dist_name = dist.metadata["Name"]
            if dist_name:
                canonical = re.sub(r"[-_.]+", "-", dist_name).lower()
                pins.setdefault(canonical, f"{canonical}=={dist.version}")
    return tuple(pins[key] for key in sorted(pins))


def python_version() -> str:
    return platform.python_version()


def platform_name() -> str:
    return f"{sys.platform}-{platform.machine()}"


def data_inputs(params: dict[str, Any], base: Path) -> tuple[DataInput, ...]:
    """Hash every parameter whose value names an existing file or folder (relative to `base`)."""
    found: list[DataInput] = []
    for name in sorted(params):
        for value in _path_candidates(params[name]):
            path = Path(value)
            resolved = path if path.is_absolute() else base / path
            try:
                if resolved.is_file():
                    found.append(DataInput(name, value, "file", sha256_file(resolved), resolved.stat().st_size, 1))
                elif resolved.is_dir():
                    digest = sha256_tree(resolved)
                    found.append(DataInput(name, value, "dir", digest.sha256, digest.size, digest.files))
            except OSError:
                continue
    return tuple(found)


def _path_candidates(value: Any) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text and "\n" not in text and len(text) < 4096 and text not in (".", ".."):
            return [text]
        return []
    if isinstance(value, (list, tuple)):
        return [item for v in value for item in _path_candidates(v)]
    return []
