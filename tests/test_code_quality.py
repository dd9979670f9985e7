"""nb2prod's own code is held to what it promises for generated code: formatted (black), linted
(ruff) and type-checked (mypy), with the settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["nb2prod", "tests", "benchmarks", "examples"]
# Copied verbatim into generated packages, which are checked to be black-stable at black's defaults;
# named one by one, since black skips excluded folders even when they are named.
SHIPPED = [
    "nb2prod/runtime.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "nb2prod/serve/shipped").glob("*.py")),
]


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([sys.executable, "-m", "black", "--check", "--quiet", *SOURCES], id="black"),
        pytest.param([sys.executable, "-m", "black", "--check", "--quiet", "-l", "88", *SHIPPED], id="black-shipped"),
        pytest.param([sys.executable, "-m", "ruff", "check", "--quiet", *SOURCES], id="ruff"),
        pytest.param([sys.executable, "-m", "mypy"], id="mypy"),
    ],
)
def test_own_code(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
