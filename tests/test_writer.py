"""The atomic writer: user files, symlinks and folders survive rebuilds exactly as they were, a
build killed with SIGKILL at any point (between the two renames of the swap too) leaves the old or
the new tree and the next build succeeds, and concurrent builds never claim a hand edit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nbtest_helpers import cell, write_notebook

from nb2prod import api
from nb2prod.writer import output_lock, recover_output


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder` as it is: kind, content or link target, mode (not following links)."""
    out: dict[str, tuple] = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = Path(root) / name
            info = os.lstat(path)
            relative = path.relative_to(folder).as_posix()
            if os.path.islink(path):
                out[relative] = ("link", os.readlink(path))
            elif path.is_dir():
                out[relative] = ("dir", oct(info.st_mode))
            else:
                out[relative] = ("file", path.read_bytes(), oct(info.st_mode), info.st_ino)
    return out


def notebook(path: Path, version: int, cells: int = 3) -> Path:
    """A small notebook; `version` changes what it builds. Written atomically (a concurrent
    build never reads half a notebook)."""
    extra = [cell(f"def helper_{i}(x):\n    return x + {i} + {version}", "export") for i in range(cells)]
    temporary = path.with_name(f".{path.name}.tmp")
    write_notebook(
        temporary,
        [cell(f"n = {version}  # size", "parameters"), *extra, cell("model = helper_0(n)", "train")],
    )
    os.replace(temporary, path)
    return path


def add_user_things(out: Path) -> None:
    (out / "NOTES.txt").write_text("mine")
    venv = out / ".venv"
    (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "activate").write_text("# activate")
    (venv / "bin" / "activate").chmod(0o755)
    (venv / "lib" / "python3.11" / "site-packages" / "__pycache__").mkdir()
    (venv / "lib" / "python3.11" / "site-packages" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00pyc")
    (venv / "lib64").symlink_to("lib", target_is_directory=True)
    (out / "empty").mkdir()
    (out / "private").mkdir(mode=0o700)
    (out / "private" / "key").write_text("k")
    (out / "dangling").symlink_to(out / "nowhere")
    (out / "data-link").symlink_to("..", target_is_directory=True)


def user_part(snap: dict[str, tuple], generated: set[str]) -> dict[str, tuple]:
    return {
        k: v
        for k, v in snap.items()
        if k not in generated and not k.startswith(("src", "tests", "job", "k8s", "kubeflow", "docker", "wheelhouse"))
    }


def test_rebuilds_keep_user_files_symlinks_and_empty_folders_exactly(tmp_path: Path) -> None:
    path = notebook(tmp_path / "nb.ipynb", 1)
    out = tmp_path / "out"
    api.build(path, output=out)
    add_user_things(out)
    before = snapshot(out)
    generated = set(json.loads((out / "nb2prod.json").read_text())["files"]) | {"nb2prod.json"}
    notebook(path, 2)
    assert api.build(path, output=out).changed
    after = snapshot(out)
    assert user_part(after, generated) == user_part(before, generated)
    assert (out / ".venv" / "lib").is_dir() and (out / "empty").is_dir()
    assert os.path.islink(out / "dangling") and os.path.islink(out / ".venv" / "lib64")
    assert oct((out / "private").stat().st_mode & 0o777) == "0o700"
    notebook(path, 3)
    assert api.build(path, output=out).changed  # a dangling symlink does not block a rebuild
    assert user_part(snapshot(out), generated) == user_part(before, generated)
    assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]


def test_an_unchanged_rebuild_touches_nothing(tmp_path: Path) -> None:
    path = notebook(tmp_path / "nb.ipynb", 1)
    out = tmp_path / "out"
    api.build(path, output=out)
    add_user_things(out)
    before = snapshot(out)
    assert not api.build(path, output=out).changed
    assert snapshot(out) == before


DRIVER = """
import os, signal, sys
real = os.rename
calls = 0
def rename(src, dst, *args, **kwargs):
    global calls
    calls += 1
    if calls == int(os.environ["KILL_AT_RENAME"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst, *args, **kwargs)
os.rename = rename
from nb2prod.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("rename", [1, 2])
def test_a_build_killed_at_either_rename_of_the_swap_is_recovered(tmp_path: Path, rename: int) -> None:
    """SIGKILL just before the first rename (output still in place) and just before the second
    (output set aside, new tree not yet in place): the next build recovers, nothing is lost."""
    path = notebook(tmp_path / "nb.ipynb", 1)
    out = tmp_path / "out"
    api.build(path, output=out)
    add_user_things(out)
    old = snapshot(out)
    generated = set(json.loads((out / "nb2prod.json").read_text())["files"]) | {"nb2prod.json"}
    notebook(path, 2)
    env = {**os.environ, "KILL_AT_RENAME": str(rename)}
    killed = subprocess.run([sys.executable, "-c", DRIVER, "build", str(path), "-o", str(out)], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    if rename == 2:
        assert not out.exists()  # the window the recovery is for
    with output_lock(out):
        recover_output(out)
    assert snapshot(out) == old  # the previous output, user files included, exactly
    result = subprocess.run(
        [sys.executable, "-m", "nb2prod", "build", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert user_part(snapshot(out), generated) == user_part(old, generated)
    assert "n = 2" in (out / "job" / "train.ipynb").read_text().replace('"n = 2', "n = 2")
    assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]


def test_the_next_build_recovers_by_itself_after_a_kill_between_the_renames(tmp_path: Path) -> None:
    path = notebook(tmp_path / "nb.ipynb", 1)
    out = tmp_path / "out"
    api.build(path, output=out)
    (out / "NOTES.txt").write_text("mine")
    notebook(path, 2)
    env = {**os.environ, "KILL_AT_RENAME": "2"}
    subprocess.run([sys.executable, "-c", DRIVER, "build", str(path), "-o", str(out)], env=env, timeout=300)
    assert not out.exists()
    result = api.build(path, output=out)
    assert result.changed and (out / "NOTES.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]


def test_random_sigkills_of_real_builds_leave_the_old_or_the_new_tree(tmp_path: Path) -> None:
    """15 real `nb2prod build` processes killed with SIGKILL at random points (fixed seed) while
    alternating between two notebook versions, with a venv-like tree of user files in the output."""
    rng = random.Random(20261201)
    path = tmp_path / "nb.ipynb"
    out = tmp_path / "out"
    trees = {}
    for version in (1, 2):
        notebook(path, version, cells=40)
        api.build(path, output=tmp_path / f"expected-{version}")
        trees[version] = {
            k: v[1]
            for k, v in snapshot(tmp_path / f"expected-{version}").items()
            if v[0] == "file" and k != "nb2prod.json"
        }
    notebook(path, 1, cells=40)
    api.build(path, output=out)
    add_user_things(out)
    for i in range(200):
        (out / ".venv" / "lib" / "python3.11" / "site-packages" / f"mod{i}.py").write_text(f"x = {i}\n")
    user_before = {
        k: v
        for k, v in snapshot(out).items()
        if k.startswith((".venv", "NOTES", "empty", "private", "dangling", "data-link"))
    }
    command = [sys.executable, "-m", "nb2prod", "build", str(path), "-o", str(out)]
    env = {**os.environ}
    notebook(path, 2, cells=40)
    started = time.monotonic()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=300)
    duration = time.monotonic() - started  # of one real changing build, to spread the kills over
    kills = 0
    version = 2
    for attempt in range(15):
        version = 2 if version == 1 else 1
        notebook(path, version, cells=40)
        begun = time.monotonic()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 1.0) * duration)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        else:
            duration = min(duration, time.monotonic() - begun)  # builds got faster (warm caches)
        process.wait(timeout=300)
        with output_lock(out):
            recover_output(out)
        now = snapshot(out)
        generated = {k: v[1] for k, v in now.items() if v[0] == "file" and k in trees[1].keys() | trees[2].keys()}
        assert generated in (trees[1], trees[2]), f"attempt {attempt}: neither the old nor the new tree"
        assert {
            k: v for k, v in now.items() if k in user_before
        } == user_before, f"attempt {attempt}: user files changed"
        assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]
    assert kills, "no build was killed"
    print(f"{kills} of 15 builds killed with SIGKILL")
    final = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    assert {k: v[1] for k, v in snapshot(out).items() if v[0] == "file" and k in trees[version]} == trees[version]


PAUSING_DRIVER = """
import os, sys, time
from pathlib import Path
import nb2prod.writer as writer
real = writer.read_manifest
def read_manifest(output):
    manifest = real(output)
    marks = Path(os.environ["MARKS"])
    (marks / "a-read").touch()
    for _ in range(160):  # wait (at most 8 s) for the other build to finish
        if (marks / "b-done").exists():
            break
        time.sleep(0.05)
    return manifest
writer.read_manifest = read_manifest
from nb2prod.cli import main
main(sys.argv[1:])
"""


def test_a_concurrent_cli_build_never_claims_a_hand_edit(tmp_path: Path) -> None:
    """Build A has read the output's record when build B of a newer notebook starts: B waits for
    A's output lock instead of replacing the files under it, so A finds no hand edit."""
    path = notebook(tmp_path / "nb.ipynb", 1)
    out = tmp_path / "out"
    api.build(path, output=out)
    marks = tmp_path / "marks"
    marks.mkdir()
    notebook(path, 2)
    command = ["build", str(path), "-o", str(out)]
    env = {**os.environ, "MARKS": str(marks)}
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSING_DRIVER, *command], env=env, stderr=subprocess.PIPE, text=True
    )
    for _ in range(1200):
        if (marks / "a-read").exists() or first.poll() is not None:
            break
        time.sleep(0.05)
    assert (marks / "a-read").exists(), "build A never reached the output"
    notebook(path, 3)
    second = subprocess.Popen([sys.executable, "-m", "nb2prod", *command], stderr=subprocess.PIPE, text=True)
    while second.poll() is None and first.poll() is None:
        time.sleep(0.05)
    (marks / "b-done").touch()
    errors = [first.communicate(timeout=300)[1], second.communicate(timeout=300)[1]]
    assert [first.returncode, second.returncode] == [0, 0], errors
    assert not any("edited by hand" in e for e in errors), errors
    assert api.check(path, output=out).ok


def test_two_cli_builds_of_one_output_started_together_give_one_whole_build(tmp_path: Path) -> None:
    """Two real `nb2prod build` processes write one output at once (two notebooks that build
    different trees, and the same notebook twice): both succeed, each reports a whole build, and the
    output is exactly one of the two trees, its nb2prod.json true to every file, nothing left over."""
    first, second = notebook(tmp_path / "ledger.ipynb", 1, cells=40), notebook(tmp_path / "tally.ipynb", 2, cells=40)
    trees = {}
    for source in (first, second):
        built = Path(api.build(source, output=tmp_path / f"expected-{source.stem}").output_dir)
        trees[source.stem] = {k: v[1] for k, v in snapshot(built).items() if v[0] == "file" and k != "nb2prod.json"}
    assert trees["ledger"] != trees["tally"]
    out = tmp_path / "out"
    for pair in ((first, second), (first, first)):
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "nb2prod", "build", str(source), "-o", str(out)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for source in pair
        ]
        results = [p.communicate(timeout=600) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], results
        for stdout, stderr in results:
            assert stdout.startswith(("built: ", "unchanged: ")) and f"{out} (" in stdout, stdout + stderr
        files = {k: v[1] for k, v in snapshot(out).items() if v[0] == "file" and k != "nb2prod.json"}
        winner = next((name for name, tree in trees.items() if files == tree), None)
        assert winner is not None, "the output is neither notebook's whole build"
        assert api.check(tmp_path / f"{winner}.ipynb", output=out).ok
        assert not [p for p in tmp_path.iterdir() if "nb2prod-" in p.name]  # no staging or retired folder
    assert (tmp_path / ".out.lock").is_file()  # the filelock both builds took
