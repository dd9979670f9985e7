"""Fixtures for the Jupyter tests: a real Jupyter server (pytest-jupyter) with nb2prod's
server extension, scoped to this folder so its autouse fixtures touch no other test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F401,F403  (fixtures and the async test hook)

REPO = Path(__file__).resolve().parents[3]
FRAUD = REPO / "examples" / "fraud" / "fraud_detection.ipynb"
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def jp_server_config() -> dict:
    return {"ServerApp": {"jpserver_extensions": {"nb2prod.jupyter": True}}}


@pytest.fixture
def fraud_notebook(jp_root_dir: Path) -> Path:
    """The fraud example, copied into the server root."""
    target = jp_root_dir / "fraud" / "fraud_detection.ipynb"
    target.parent.mkdir(parents=True)
    shutil.copy(FRAUD, target)
    return target


@pytest.fixture
def broken_notebook(jp_root_dir: Path) -> Path:
    """A notebook whose train cell uses a function defined in an untagged cell."""
    target = jp_root_dir / "broken_dependency.ipynb"
    shutil.copy(FIXTURES / "broken_dependency.ipynb", target)
    return target
