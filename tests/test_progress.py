"""Progress on a terminal (nb2prod/progress.py): drawn on a real pseudo-terminal, absent from pipes
and under `-q`. `nb2prod train` runs for real (both engines) on a small notebook."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from runs.conftest import write_ridge_project

from nb2prod import api
from nb2prod.progress import CellProgress, terminal


def _drain(fd: int) -> str:
    """Everything written to a pty's other end, until it is closed."""
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _in_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run `nb2prod ARGS` with stdin, stdout and stderr on a new pseudo-terminal; all it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its terminal is the pty
        os.chdir(cwd)
        os.execv(sys.executable, [sys.executable, "-m", "nb2prod", *args])
    text = _drain(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


@pytest.fixture(scope="module")
def ridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    notebook = write_ridge_project(tmp_path_factory.mktemp("progress") / "project")
    api.build(notebook)
    return notebook


@pytest.mark.parametrize("engine", ["python", "papermill"])
def test_train_draws_the_cell_being_run_on_a_terminal(ridge: Path, engine: str) -> None:
    code, out = _in_pty(["train", ridge.name, "--engine", engine], ridge.parent)
    assert code == 0, out
    frames = [f for f in out.split("\r") if f.startswith("cell ")]
    assert frames, out
    assert any(" train: df = pd.read_csv(data_path)" in f for f in frames), frames
    assert any(" metrics: " in f for f in frames), frames
    counts = [tuple(int(n) for n in re.match(r"cell (\d+)/(\d+)", f).groups()) for f in frames]
    total = counts[-1][1]
    assert all(n == total for _, n in counts) and counts[-1][0] == total  # i of n, up to the last
    assert [i for i, _ in counts] == sorted(i for i, _ in counts)  # in order
    assert all(f.rstrip().rsplit(" ", 1)[-1].count(":") == 1 for f in frames)  # elapsed m:ss at the end
    assert "run " in out and "succeeded" in out


def test_piped_train_output_has_no_progress(ridge: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nb2prod", "train", ridge.name, "--engine", "python"],
        cwd=ridge.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr + done.stdout
    assert "cell " not in done.stderr
    assert "store: runs (from notebook)" in done.stderr.splitlines()


def test_quiet_draws_nothing_even_on_a_terminal(ridge: Path) -> None:
    code, out = _in_pty(["-q", "train", ridge.name, "--engine", "python"], ridge.parent)
    assert code == 0, out
    assert "cell " not in out and "succeeded" in out
    assert "store:" not in out
    assert out.replace("\r\n", "\n").count("\r") == 0


def test_terminal_means_a_tty_stream() -> None:
    leader, follower = pty.openpty()
    read_end, write_end = os.pipe()
    with open(follower, "w", closefd=True) as tty, open(write_end, "w", closefd=True) as pipe:
        assert terminal(tty)
        assert not terminal(pipe)
    os.close(leader)
    os.close(read_end)


def test_cell_progress_redraws_one_line_and_ends_it(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    with open(follower, "w", closefd=True) as tty:
        progress = CellProgress(tty, tick=0.05)
        progress(1, 2, "train", "model = fit(X,   y)   ")
        progress(2, 2, None, "x" * 200)
        progress.close()
        progress.close()  # closing twice ends the line once
    text = _drain(leader)
    frames = text.replace("\r\n", "\n").split("\r")
    assert any(f.startswith("cell 1/2 train: model = fit(X, y)") for f in frames)
    long = [f for f in frames if f.startswith("cell 2/2: ")]
    assert long and all("..." in f and len(f.rstrip("\n")) <= 78 for f in long)
    assert text.replace("\r\n", "\n").endswith("\n") and text.replace("\r\n", "\n").count("\n") == 1
