"""Engine details a user sees on every run: papermill reads every parameter, and a finished
kernel is shut down without an interrupt."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
from nbtest_helpers import cell, write_notebook

from nb2prod.runs.engines import ipc_kernel_manager, papermill_parameters_source

from .conftest import cli


def test_help_comments_holding_equals_signs_move_above_their_parameter():
    source = 'ratio = 0.5  # share: use ratio = 0.25 for small data\nname = "a=b"\nn = 3  # rows'
    assert papermill_parameters_source(source) == (
        '# share: use ratio = 0.25 for small data\nratio = 0.5\nname = "a=b"\nn = 3  # rows'
    )


def test_papermill_knows_every_parameter_of_a_help_comment_with_equals(tmp_path: Path):
    notebook = write_notebook(
        tmp_path / "ratio.ipynb",
        [
            cell("ratio = 0.5  # share of rows; use ratio = 0.25 for small data\nn = 8  # rows", "parameters"),
            cell("model = ratio * n", "train"),
            cell('metrics = {"value": model}', "metrics"),
        ],
    )
    done = cli("train", str(notebook), "-p", "ratio", "0.25", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["metrics"] == {"value": 2.0}
    assert "Passed unknown parameter" not in done.stderr and "Unable to parse line" not in done.stderr
    assert "KeyboardInterrupt" not in done.stdout + done.stderr


def test_a_finished_kernel_is_not_interrupted_on_shutdown(tmp_path: Path):
    """jupyter_client interrupts (SIGINT) before each shutdown; a kernel idling in an event loop
    then prints "KeyboardInterrupt caught in kernel". The kernel here records any SIGINT."""
    marker = tmp_path / "interrupted"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import signal\n"
            "kernel = get_ipython().kernel\n"
            "kernel.pre_handler_hook = kernel.post_handler_hook = lambda: None\n"
            f"signal.signal(signal.SIGINT, lambda *args: open({str(marker)!r}, 'w').close())"
        ),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(
        str(tmp_path / "in.ipynb"),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        kernel_manager_class=ipc_kernel_manager(),
    )
    assert (tmp_path / "out.ipynb").is_file()
    assert not marker.exists()
