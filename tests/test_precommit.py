"""The repository's pre-commit hooks, run by pre-commit itself on a project of its own.

`language: system` through `pre-commit try-repo` (nb2prod as installed here); `language: python`
through a project config naming this checkout, installed by pre-commit into its own environment
with the notebook's library as `additional_dependencies`, on a PATH without node.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

REPO = Path(__file__).resolve().parent.parent
GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True)


def project(folder: Path, imports: str = "import math") -> Path:
    """A git project holding one tagged notebook and its committed build output."""
    folder.mkdir()
    notebook = write_notebook(
        folder / "model.ipynb",
        [
            cell("n = 3  # how many", "parameters"),
            cell(f"{imports}\n\n\ndef grow(x):\n    return x * 2", "export"),
            cell("model = grow(n)", "train"),
            cell('metrics = {"value": model}', "metrics"),
        ],
    )
    built = subprocess.run([sys.executable, "-m", "nb2prod", "build", str(notebook)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "model")
    return notebook


def stale(notebook: Path) -> None:
    text = notebook.read_text().replace("return x * 2", "return x * 3")
    notebook.write_text(text)
    git(notebook.parent, "add", notebook.name)


def pre_commit(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "PRE_COMMIT_COLOR": "never"}


def test_system_hook_passes_a_fresh_build_and_refuses_a_stale_one(tmp_path: Path, env: dict[str, str]) -> None:
    notebook = project(tmp_path / "proj")
    fresh = pre_commit(
        notebook.parent, "try-repo", str(REPO), "nb2prod-check-system", "--files", notebook.name, env=env
    )
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "Passed" in fresh.stdout
    stale(notebook)
    refused = pre_commit(
        notebook.parent, "try-repo", str(REPO), "nb2prod-check-system", "--files", notebook.name, env=env
    )
    assert refused.returncode == 1, refused.stdout
    assert "Failed" in refused.stdout and "differs from what the notebook builds" in refused.stdout


NODE_TOOLS = frozenset({"node", "nodejs", "npm", "npx", "yarn", "jlpm", "corepack"})


def _path_without_node(folder: Path) -> str:
    """This PATH's programs, linked into one folder, less node and its package managers."""
    folder.mkdir()
    for entry in os.environ["PATH"].split(os.pathsep):
        directory = Path(entry)
        if not directory.is_dir():
            continue
        for program in directory.iterdir():
            target = folder / program.name
            if program.name in NODE_TOOLS or target.exists() or not os.access(program, os.X_OK):
                continue
            target.symlink_to(program.resolve() if program.is_symlink() else program)
    return str(folder)


def test_python_hook_installs_without_node_and_uses_additional_dependencies(
    tmp_path: Path, env: dict[str, str]
) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    from importlib.metadata import version

    # a library nb2prod itself does not depend on: the hook's environment has it only through
    # additional_dependencies, at the version the committed build pinned
    pin = f"sortedcontainers=={version('sortedcontainers')}"
    notebook = project(tmp_path / "proj", imports="import math\n\nimport sortedcontainers")
    (notebook.parent / ".pre-commit-config.yaml").write_text(
        "repos:\n"
        f"  - repo: {REPO}\n"
        f"    rev: {head}\n"
        "    hooks:\n"
        "      - id: nb2prod-check\n"
        f"        additional_dependencies: ['{pin}']\n"
    )
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the hook runs the nb2prod pre-commit installed
    env["PATH"] = _path_without_node(tmp_path / "bin")
    assert shutil.which("node", path=env["PATH"]) is None
    fresh = pre_commit(notebook.parent, "run", "--files", notebook.name, env=env)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    stale(notebook)
    refused = pre_commit(notebook.parent, "run", "--files", notebook.name, env=env)
    assert refused.returncode == 1, refused.stdout
    assert "differs from what the notebook builds" in refused.stdout
