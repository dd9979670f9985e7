"""Shared fixtures; the notebook builders live in nbtest_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from nbtest_helpers import SMALL_CELLS, cell, write_notebook

# The golden trees hold generated packages, tests included; they are data, not tests of nb2prod.
collect_ignore = ["golden"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite the expected trees of the golden-file tests."
    )


@pytest.fixture
def small_notebook(tmp_path: Path) -> Path:
    """A complete, fast notebook: every role, plain Python only."""
    return write_notebook(tmp_path / "small.ipynb", [cell(src, *tags) for src, tags in SMALL_CELLS])
