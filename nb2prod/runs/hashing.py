"""sha256 of files and folders (a folder hashes its sorted relative paths and file contents)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
_SKIP_DIRS = {".git", "__pycache__", ".ipynb_checkpoints"}


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
    return digest.hexdigest()


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
