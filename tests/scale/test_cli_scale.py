"""The score and sweep commands as a user meets them: a progress bar on a terminal, one-sentence
refusals before anything runs."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from nb2prod.errors import InputError
from nb2prod.scale.engine import open_engine

from .conftest import cli


def test_a_terminal_gets_a_progress_bar_and_a_summary(fraud, data, tmp_path):
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "nb2prod",
                "score",
                "production",
                str(data["csv"]),
                str(tmp_path / "out"),
                "--store",
                str(fraud["store"]),
                "--chunk-rows",
                "1000",
            ],
            stdout=subprocess.PIPE,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            text=True,
            timeout=600,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                block = os.read(leader, 65536)
            except OSError:
                break
            if not block:
                break
            chunks.append(block)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    screen = b"".join(chunks).decode()
    assert done.returncode == 0, screen
    assert "rows/s" in screen and "ETA" in screen and "12,000/" in screen
    assert done.stdout.startswith("scored 12,000 of 12,000 rows with run ") and "rows/s" in done.stdout


def test_without_a_terminal_only_the_summary_is_printed(fraud, data, tmp_path):
    done = cli("score", "production", str(data["parquet"]), str(tmp_path / "out"), "--store", str(fraud["store"]))
    assert done.returncode == 0, done.stderr
    assert "ETA" not in done.stderr and len(done.stdout.splitlines()) == 1


def test_engine_options_that_do_not_fit_are_refused(fraud, data, tmp_path):
    done = cli(
        "score",
        "production",
        str(data["parquet"]),
        str(tmp_path / "o"),
        "--store",
        str(fraud["store"]),
        "--scheduler",
        "tcp://127.0.0.1:1",
    )
    assert done.returncode == 2 and "add --engine dask" in done.stderr
    done = cli(
        "score",
        "production",
        str(data["parquet"]),
        str(tmp_path / "o"),
        "--store",
        str(fraud["store"]),
        "--chunk-rows",
        "0",
    )
    assert done.returncode == 2 and "--chunk-rows" in done.stderr
    done = cli("score", "nope", str(data["parquet"]), str(tmp_path / "o"), "--store", str(fraud["store"]))
    assert done.returncode == 2 and "'nope' not found" in done.stderr
    assert not (tmp_path / "o").exists()


def test_a_missing_extra_names_the_pip_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if nb2prod[dask] were not installed
    with pytest.raises(InputError, match=r"pip install nb2prod\[dask\]"):
        open_engine("dask")


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("max_depht=3,4", "unknown parameter 'max_depht'"),
        ("max_depth=3,deep", "--grid max_depth: parameter 'max_depth' expects an int, got 'deep'"),
        ("max_depth", "expected NAME=V1,V2"),
    ],
)
def test_a_bad_grid_is_refused_before_any_point_runs(fraud, tmp_path, grid, message):
    store = tmp_path / "runs"
    done = cli("sweep", str(fraud["build"]), "--grid", grid, "--store", str(store))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not store.exists() or not any(store.iterdir())


def test_a_swept_parameter_cannot_also_be_fixed_and_a_grid_is_needed(fraud, tmp_path):
    done = cli(
        "sweep", str(fraud["build"]), "--grid", "max_depth=3,4", "-p", "max_depth", "5", "--store", str(tmp_path / "r")
    )
    assert done.returncode == 2 and "also swept by the grid" in done.stderr
    done = cli("sweep", str(fraud["build"]), "--store", str(tmp_path / "r"))
    assert done.returncode == 2 and "no grid" in done.stderr
