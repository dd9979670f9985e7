"""The clean environment the generated job runs in: a virtual environment made from the build's
`requirements.lock` alone, cached by the hash of the pinned requirements, so a requirement the
code needs but the lock lacks fails here, not in production."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from nb2prod.errors import InputError

COMPLETE = "nb2prod-complete"


def lock_key(lock: Path) -> str:
    """The pinned requirements (comments and order aside), this Python and platform."""
    lines = sorted(
        line.strip()
        for line in lock.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    text = "\n".join([sys.version, sys.platform, *lines])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_root() -> Path:
    from nb2prod.formatting import cache_dir

    return cache_dir().parent / "verify-venvs"


def python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def clean_env() -> dict[str, str]:
    """The environment variables for processes in the clean venv: nothing that adds packages."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA", "NB2PROD_"))}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path):
        yield


def _pip(python: Path, args: list[str], timeout: float, what: str) -> None:
    try:
        done = subprocess.run(
            [str(python), "-m", "pip", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=clean_env(),
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"{what} did not finish within {timeout:.0f} s; pass a longer --timeout.") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip().startswith("ERROR")]
        reason = lines[-1].strip() if lines else (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise InputError(f"{what} failed: {reason}")


@contextlib.contextmanager
def clean_environment(lock: Path, package_dir: Path, dist: str, timeout: float) -> Iterator[tuple[Path, bool]]:
    """A venv with the lock's requirements and the built package installed: (its python, was cached).

    The venv is made once per lock hash; the package is installed for the block and removed after
    (under a file lock, so verifies of the same lock take turns), leaving the cached venv clean.
    """
    key = lock_key(lock)
    venv = cache_root() / key
    with _locked(cache_root() / f"{key}.lock"):
        cached = (venv / COMPLETE).is_file()
        if not cached:
            shutil.rmtree(venv, ignore_errors=True)
            try:
                subprocess.run(
                    [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=timeout
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                shutil.rmtree(venv, ignore_errors=True)
                raise InputError(f"cannot make a virtual environment in {venv} ({exc}).") from None
            try:
                _pip(
                    python_of(venv),
                    ["install", "--quiet", "-r", str(lock)],
                    timeout,
                    f"installing {lock} into a clean environment",
                )
            except InputError:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            (venv / COMPLETE).write_text(lock.read_text(encoding="utf-8"), encoding="utf-8")
        python = python_of(venv)
        _pip(
            python,
            ["install", "--quiet", "--no-deps", "--force-reinstall", str(package_dir)],
            timeout,
            f"installing the package built in {package_dir} into the clean environment",
        )
        try:
            yield python, cached
        finally:
            with contextlib.suppress(InputError):
                _pip(python, ["uninstall", "--quiet", "--yes", dist], timeout, f"removing {dist}")
