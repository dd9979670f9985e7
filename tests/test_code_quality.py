"""nb2prod's own code is held to what it promises for generated code: formatted (black), linted
(ruff) and type-checked (mypy), with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["nb2prod", "tests", "benchmarks", "examples"]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "black", "--check", "--quiet", *SOURCES], id="black"),
        pytest.param(
            [sys.executable, "-m", "black", "--check", "--quiet", "-l", "88", "nb2prod/runtime.py"], id="black-shipped"
        ),
        pytest.param([sys.executable, "-m", "ruff", "check", "--quiet", *SOURCES], id="ruff"),
        pytest.param([sys.executable, "-m", "mypy"], id="mypy"),
    ],
)
def test_own_code(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
