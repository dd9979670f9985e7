"""sha256 of files and folders (a folder hashes its sorted relative paths and file contents)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from nb2prod.runtime import sha256_file
from nb2prod.writer import sha256_bytes

_SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints"}
__all__ = ["TreeDigest", "iter_tree", "sha256_bytes", "sha256_file", "sha256_tree"]


def iter_tree(root: Path) -> list[Path]:
    """Files under `root` (following no symlinked folders), sorted, skipping VCS and cache folders."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in files:
            found.append(Path(folder, name))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


@dataclass(frozen=True)
class TreeDigest:
    sha256: str
    files: int
    size: int


def sha256_tree(root: Path) -> TreeDigest:
    """One digest for a folder: each file contributes `relative/path\\0<sha256>\\n`."""
    digest = hashlib.sha256()
    count = 0
    size = 0
    for path in iter_tree(root):
        rel = path.relative_to(root).as_posix()
        digest.update(f"{rel}\0{sha256_file(path)}\n".encode())
        count += 1
        size += path.stat().st_size
    return TreeDigest(digest.hexdigest(), count, size)
