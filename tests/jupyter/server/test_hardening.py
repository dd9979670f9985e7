"""The server extension held to what the command line guarantees: output folders checked at the
moment of use, worker threads with the command line's stack and recursion limit, hostile bodies
answered with one sentence, and quick work that never waits behind builds."""

from __future__ import annotations

import asyncio
import ctypes
import json
import resource
import sys
import threading
from pathlib import Path

import pytest

from tests.jupyter.server.test_jupyter_endpoints import hold_builds, post, wait_for
from tests.nbtest_helpers import SMALL_CELLS, cell, write_notebook

DEEP_TERMS = 1200  # a sum this long needs more than Python's default 1000 frames to analyse


def small_notebook(path: Path, **metadata) -> Path:
    return write_notebook(path, [cell(src, *tags) for src, tags in SMALL_CELLS], metadata=metadata or None)


def deep_notebook(path: Path) -> Path:
    cells = [cell(src, *tags) for src, tags in SMALL_CELLS]
    cells.insert(2, cell("total = " + " + ".join(["1"] * DEEP_TERMS) + "\n", "export"))
    return write_notebook(path, cells)


def set_output(notebook: Path, output: str) -> None:
    data = json.loads(notebook.read_text())
    data["metadata"].setdefault("nb2prod", {})["output"] = output
    notebook.write_text(json.dumps(data))


# --- 6: the output folder is resolved once, checked, and passed down ----------------------------


async def test_an_output_setting_that_flips_after_the_check_cannot_move_the_build(
    jp_fetch, jp_root_dir, tmp_path_factory, monkeypatch
):
    from nb2prod import api

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    notebook = small_notebook(jp_root_dir / "small.ipynb", nb2prod={"output": str(jp_root_dir / "inside")})
    real_output_dir = api.output_dir
    flips = []

    def output_dir_then_flip(*args, **kwargs):
        # The notebook is rewritten right after nb2prod has read where its output goes: the
        # worst moment of a notebook whose `output` changes between two reads.
        found = real_output_dir(*args, **kwargs)
        set_output(notebook, str(elsewhere / "out"))
        flips.append(found)
        return found

    monkeypatch.setattr(api, "output_dir", output_dir_then_flip)
    status, reply = await post(jp_fetch, "build", {"path": "small.ipynb"})
    assert flips, "the build never looked up its output folder"
    assert status == 200 and reply["ok"] is True, reply
    assert reply["output_path"] == "inside"
    assert (jp_root_dir / "inside" / "nb2prod.json").is_file()
    assert list(elsewhere.iterdir()) == []


async def test_check_refuses_an_output_folder_outside_the_root(jp_fetch, jp_root_dir, tmp_path_factory):
    from nb2prod import api

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    notebook = small_notebook(jp_root_dir / "small.ipynb", nb2prod={"output": str(elsewhere / "out")})
    api.build(notebook)  # what the command line may build there
    before = sorted(p.name for p in (elsewhere / "out").iterdir())
    status, reply = await post(jp_fetch, "check", {"path": "small.ipynb"})
    assert status == 403, reply
    assert "outside the server root" in reply["message"] and "`output`" in reply["message"]
    assert "Traceback" not in json.dumps(reply)
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == before


# --- 15: worker threads get the command line's stack and recursion limit -----------------------


def current_thread_stack_bytes() -> int:
    """The stack size of the calling thread, as the C library reports it."""
    libc = ctypes.CDLL(None)
    libc.pthread_self.restype = ctypes.c_ulong
    libc.pthread_getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_char_p]
    libc.pthread_attr_getstack.argtypes = [
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_void_p),
        ctypes.POINTER(ctypes.c_size_t),
    ]
    attr = ctypes.create_string_buffer(128)  # a pthread_attr_t is 56 bytes on x86-64, 64 on arm64
    assert libc.pthread_getattr_np(libc.pthread_self(), attr) == 0
    address, size = ctypes.c_void_p(), ctypes.c_size_t()
    assert libc.pthread_attr_getstack(attr, ctypes.byref(address), ctypes.byref(size)) == 0
    libc.pthread_attr_destroy(attr)
    return size.value


async def test_worker_threads_have_at_least_the_command_lines_stack(jp_fetch, jp_root_dir, monkeypatch):
    from nb2prod import api

    small_notebook(jp_root_dir / "small.ipynb")
    main_stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    seen: dict[str, int] = {}
    real_inspect, real_build = api.inspect, api.build

    def measured(real, label):
        def call(*args, **kwargs):
            seen[label] = current_thread_stack_bytes()
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(api, "inspect", measured(real_inspect, "inspect"))
    monkeypatch.setattr(api, "build", measured(real_build, "build"))
    # A platform whose threads start with a small stack (musl: 128 KiB, macOS: 512 KiB).
    previous = threading.stack_size(256 * 1024)
    try:
        assert (await post(jp_fetch, "inspect", {"path": "small.ipynb"}))[0] == 200
        assert (await post(jp_fetch, "build", {"path": "small.ipynb"}))[0] == 200
        # Only nb2prod's own threads are changed: the process-wide default is left as it was.
        assert threading.stack_size() == 256 * 1024
    finally:
        threading.stack_size(previous)
    wanted = 64 * 1024 * 1024 if main_stack == resource.RLIM_INFINITY else max(main_stack, 64 * 1024 * 1024)
    assert seen["inspect"] >= wanted and seen["build"] >= wanted, seen


async def test_a_deep_cell_is_analysed_while_another_request_finishes(jp_fetch, jp_root_dir, monkeypatch, tmp_path):
    """Python's recursion limit is shared by all threads: a quick inspect that ends while a deep
    cell is analysed must not lower it under the deep analysis (that made the server report
    "nested too deeply" for a cell the command line builds)."""
    from nb2prod.analysis import cells

    monkeypatch.setenv("NB2PROD_CACHE_DIR", str(tmp_path / "cache" / "format"))  # every cell analysed
    previous_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # a Jupyter server has Python's default
    small_notebook(jp_root_dir / "small.ipynb")
    deep_notebook(jp_root_dir / "deep.ipynb")
    small_started, deep_entered, small_done = threading.Event(), threading.Event(), threading.Event()
    small_thread: list[str] = []
    real_prepare = cells.prepare_cell

    def prepare(code, roles, tagged):
        # The small inspect starts first and waits until the deep one has started its analysis;
        # the deep one then waits until the small one has answered.
        name = threading.current_thread().name
        if not small_started.is_set():
            small_thread.append(name)
            small_started.set()
            assert deep_entered.wait(60)
        elif name != small_thread[0] and not deep_entered.is_set():
            deep_entered.set()
            assert small_done.wait(60)
        return real_prepare(code, roles, tagged)

    monkeypatch.setattr(cells, "prepare_cell", prepare)
    try:
        small = asyncio.ensure_future(post(jp_fetch, "inspect", {"path": "small.ipynb"}))
        await wait_for(small_started)
        deep = asyncio.ensure_future(post(jp_fetch, "inspect", {"path": "deep.ipynb"}))
        status, reply = await small
        assert status == 200 and reply["ok"] is True, reply
        small_done.set()
        status, reply = await deep
    finally:
        small_done.set()
        deep_entered.set()
        sys.setrecursionlimit(previous_limit)
    assert status == 200, reply
    assert not [f for f in reply["findings"] if f["severity"] == "error"], reply["findings"]
    assert reply["ok"] is True


# --- 17: a hostile body is a 400 with one sentence ------------------------------------------------


@pytest.mark.parametrize("endpoint", ["build", "check", "inspect"])
async def test_a_body_of_100000_nested_arrays_is_a_400(jp_fetch, endpoint):
    status, reply = await post(jp_fetch, endpoint, "[" * 100_000 + "]" * 100_000)
    assert status == 400, reply
    assert "nests JSON" in reply["message"]
    assert reply["message"].count(".") == 1 and "Traceback" not in json.dumps(reply)


async def test_brackets_inside_strings_are_not_nesting(jp_fetch):
    status, reply = await post(jp_fetch, "inspect", {"path": "[" * 200 + ".ipynb"})
    assert status == 404, reply


# --- 18: quick work never waits behind builds -------------------------------------------------------


async def test_inspect_and_check_answer_while_builds_fill_the_build_workers(jp_fetch, jp_root_dir, monkeypatch):
    from nb2prod.jupyter import handlers

    BUILD_WORKERS = getattr(handlers, "BUILD_WORKERS", 2)  # one shared pool of 2 before quick work had its own
    for index in range(BUILD_WORKERS):
        small_notebook(jp_root_dir / f"big{index}.ipynb")
    small_notebook(jp_root_dir / "tiny.ipynb")
    _, release, threads, running = hold_builds(monkeypatch)
    builds = [
        asyncio.ensure_future(post(jp_fetch, "build", {"path": f"big{index}.ipynb"})) for index in range(BUILD_WORKERS)
    ]
    try:
        for _ in range(6000):  # bounded: at most a minute for the builds to be held
            if len(threads) == BUILD_WORKERS:
                break
            await asyncio.sleep(0.01)
        assert running[1] == BUILD_WORKERS
        quick = asyncio.ensure_future(
            asyncio.gather(
                post(jp_fetch, "inspect", {"path": "tiny.ipynb"}),
                post(jp_fetch, "check", {"path": "tiny.ipynb"}),
                post(jp_fetch, "check", {"path": "big0.ipynb"}),  # the notebook being built
            )
        )
        done, _ = await asyncio.wait([quick], timeout=120)  # bound only: held builds never end alone
        assert quick in done, "inspect/check waited behind the builds"
        (s1, inspect), (s2, check), (s3, check_built) = quick.result()
        assert s1 == s2 == s3 == 200
        assert inspect["ok"] is True and check["result"]["stale"] is True
        assert check_built["path"] == "big0.ipynb"  # answered while big0 was being built
        assert not any(b.done() for b in builds)  # the builds were still running meanwhile
    finally:
        release.set()
    for status, reply in await asyncio.gather(*builds):
        assert status == 200 and reply["ok"] is True, reply
