"""The output folder of a scoring job: complete or absent.

Parts are written into a hidden sibling, `.NAME.partial-PID-XXXX/`, each part first under a
temporary name and renamed when complete. At the end `_manifest.json` and `_SUCCESS` are written
and the sibling is renamed to OUTPUT in one step, so a reader never sees a folder that looks
complete but is not. A sibling left by a process that died (killed, power loss) is removed by the
next job writing beside it on the same host.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

from nb2prod.errors import InputError

SUCCESS = "_SUCCESS"
MANIFEST = "_manifest.json"
OWNER = "_owner"
_PARTIAL = ".partial-"


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def prepare_output(output: Path) -> Path:
    """A fresh hidden folder beside OUTPUT to write into; refuses an OUTPUT that exists."""
    output = output.absolute()
    if output.exists() or output.is_symlink():
        raise InputError(f"{output} already exists: nb2prod never overwrites an output; choose a new OUTPUT folder.")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove_orphans(output)
        folder = Path(tempfile.mkdtemp(prefix=f".{output.name}{_PARTIAL}{os.getpid()}-", dir=output.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(folder, 0o777 & ~umask)  # mkdtemp makes it private; OUTPUT gets the usual permissions
    except OSError as exc:
        raise InputError(f"cannot write the output beside {output} ({exc.strerror or exc}).") from None
    (folder / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return folder


def _remove_orphans(output: Path) -> None:
    host = socket.gethostname()
    for folder in output.parent.glob(f".{output.name}{_PARTIAL}*"):
        try:
            owner_host, pid = (folder / OWNER).read_text().split()
        except (OSError, ValueError):
            continue
        if owner_host == host and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_part(folder: Path, index: int, table: Any) -> str:
    """Write one parquet part atomically (temporary name, fsync, rename); returns its name."""
    import pyarrow.parquet as pq

    name = part_name(index)
    temporary = folder / f".{name}.writing"
    pq.write_table(table, temporary)
    _fsync(temporary)
    os.replace(temporary, folder / name)
    return name


def finish_output(folder: Path, output: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest and the success marker, then rename the folder to OUTPUT."""
    (folder / OWNER).unlink(missing_ok=True)
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    _fsync(path)
    (folder / SUCCESS).write_text("")
    _fsync(folder / SUCCESS)
    _fsync(folder)
    if output.exists():
        raise InputError(
            f"{output} appeared while scoring: nb2prod never overwrites an output; the scores stay in {folder}."
        )
    os.rename(folder, output)
    _fsync(output.parent)


def discard_output(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
