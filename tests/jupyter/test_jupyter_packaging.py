"""Packaging of the JupyterLab extension: the install enables both halves, and a wheel carries
the production bundle and the server-extension switch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def jupyter(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return ANSI.sub("", done.stdout + done.stderr)


def test_the_install_enables_the_lab_and_server_extensions() -> None:
    labextensions = jupyter("labextension", "list")
    assert re.search(r"^\s*nb2prod v\S+ enabled OK \(python, nb2prod\)", labextensions, re.M), labextensions
    server = jupyter("server", "extension", "list")
    assert re.search(r"^\s*nb2prod\.jupyter enabled", server, re.M), server
    assert re.search(r"nb2prod\.jupyter\s+OK", server), server


def test_a_wheel_carries_the_production_bundle(tmp_path: Path) -> None:
    # Build from a copy of the sources (tracked and new files, no build output, no node_modules),
    # as a release would from a clean checkout.
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    source = tmp_path / "src"
    for name in listed:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    assert not (source / "nb2prod" / "jupyter" / "labextension").exists()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("nb2prod-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = next(n.split("/data/")[0] for n in names if ".data/data/" in n) + "/data/"
    bundle = data + "share/jupyter/labextensions/nb2prod/"
    assert bundle + "package.json" in names
    assert bundle + "install.json" in names
    assert bundle + "static/style.js" in names
    assert bundle + "schemas/nb2prod/plugin.json" in names  # the settings: store folder, alias, engine, shortcuts
    assert any(re.fullmatch(re.escape(bundle) + r"static/remoteEntry\.[0-9a-f]+\.js", n) for n in names)
    assert data + "etc/jupyter/jupyter_server_config.d/nb2prod.json" in names
    assert "nb2prod/jupyter/handlers.py" in names
    # Production, not development: no source maps, no build log, minified code.
    assert not [n for n in names if n.startswith(bundle) and (n.endswith(".map") or n.endswith("build_log.json"))]
    with zipfile.ZipFile(wheel) as archive:
        code = [archive.read(n).decode() for n in names if n.startswith(bundle + "static/") and n.endswith(".js")]
    assert max(max(len(line) for line in js.splitlines()) for js in code) > 1000  # minified
    assert any("Export to production" in js for js in code)
