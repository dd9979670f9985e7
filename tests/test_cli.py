"""The command line: exit codes, one-line errors, JSON output, a fast --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nbtest_helpers import FIXTURES, cell, write_notebook


def nb2prod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    ("fixture", "fragment"),
    [
        ("invalid_json.ipynb", "invalid_json.ipynb is not valid JSON"),
        ("v2_notebook.ipynb", "uses nbformat 2"),
        ("r_kernel.ipynb", "is written for the R kernel"),
        ("syntax_error.ipynb", "cell 1 (id broken, export), line 2: the code is not valid Python"),
        ("bad_parameters.ipynb", "line 2: the value of parameter 'x' (`compute()`) is not a literal"),
        ("shell_escape.ipynb", "`!rm -rf data` is a shell command"),
        ("broken_dependency.ipynb", "'load_points' is defined only in untagged cell 3"),
    ],
)
def test_bad_input_exits_2_with_one_sentence(tmp_path: Path, fixture: str, fragment: str) -> None:
    result = nb2prod("build", str(FIXTURES / fixture), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = nb2prod("--debug", "build", str(FIXTURES / "invalid_json.ipynb"), "-o", str(tmp_path / "out"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_build_check_cycle(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert nb2prod("check", str(small_notebook), "-o", str(out)).returncode == 1
    built = nb2prod("build", str(small_notebook), "-o", str(out))
    assert built.returncode == 0 and f"built: {out}" in built.stdout
    assert nb2prod("check", str(small_notebook), "-o", str(out)).returncode == 0
    data = json.loads(small_notebook.read_text())
    data["cells"][1]["source"] = "import math\n\n\ndef grow(x):\n    return math.sqrt(x) * 3"
    small_notebook.write_text(json.dumps(data))
    stale = nb2prod("check", str(small_notebook), "-o", str(out), "--format", "json")
    assert stale.returncode == 1
    report = json.loads(stale.stdout)
    assert report[0]["stale"] and any("core.py" in r for r in report[0]["reasons"])


def test_check_reports_notebook_errors_with_exit_1(tmp_path: Path) -> None:
    result = nb2prod(
        "check", str(FIXTURES / "broken_dependency.ipynb"), "-o", str(tmp_path / "out"), "--format", "json"
    )
    assert result.returncode == 1
    finding = json.loads(result.stdout)[0]["findings"][0]
    assert finding["location"]["cell_index"] == 3 and finding["code"] == "undefined-name"


def test_inspect_json(small_notebook: Path) -> None:
    result = nb2prod("inspect", str(small_notebook), "--format", "json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    train = next(c for c in report["cells"] if c["roles"] == ["train"])
    assert set(train["uses"]) == {"grow", "n", "scale"}
    assert [p["name"] for p in report["parameters"]] == ["n", "scale"]


def test_hand_edit_exits_2_naming_the_file(small_notebook: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert nb2prod("build", str(small_notebook), "-o", str(out)).returncode == 0
    (out / "README.md").write_text("edited")
    result = nb2prod("build", str(small_notebook), "-o", str(out))
    assert result.returncode == 2 and "README.md was edited by hand" in result.stderr


def test_config_layers(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.nb2prod]\nname = "from-pyproject"\nversion = "2.0.0"\n')
    path = write_notebook(
        tmp_path / "nb.ipynb", [cell("model = 1", "train")], metadata={"nb2prod": {"name": "from-metadata"}}
    )
    out = tmp_path / "out"
    assert nb2prod("build", str(path), "-o", str(out), "--name", "from-flag").returncode == 0
    manifest = json.loads((out / "nb2prod.json").read_text())
    assert manifest["package"] == {"name": "from-flag", "import": "from_flag", "version": "2.0.0"}
    (tmp_path / "pyproject.toml").write_text('[tool.nb2prod]\nnmae = "typo"\n')
    result = nb2prod("build", str(path), "-o", str(out))
    assert result.returncode == 2 and "unknown setting 'nmae'" in result.stderr


def test_help_imports_nothing_heavy() -> None:
    code = "import sys; from nb2prod.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('black', 'papermill', 'docker', 'nbformat', 'jinja2', 'IPython') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("[]"), result.stdout
    assert "build" in result.stdout and "check" in result.stdout


def test_sweep_and_schedule_reach_the_manifests(tmp_path: Path) -> None:
    import yaml

    path = write_notebook(
        tmp_path / "nb.ipynb",
        [cell("alpha = 0.5  # weight", "parameters"), cell("model = alpha", "train")],
        metadata={"nb2prod": {"sweep": {"alpha": [0.1, 0.9]}, "schedule": "0 4 * * *"}},
    )
    out = tmp_path / "out"
    assert nb2prod("build", str(path), "-o", str(out)).returncode == 0
    sweep = yaml.safe_load((out / "k8s" / "sweep-job.yaml").read_text())
    assert sweep["spec"]["completions"] == 2
    assert yaml.safe_load((out / "k8s" / "retrain-cronjob.yaml").read_text())["spec"]["schedule"] == "0 4 * * *"
    write_notebook(
        path,
        [cell("alpha = 0.5", "parameters"), cell("model = alpha", "train")],
        metadata={"nb2prod": {"sweep": {"beta": [1]}}},
    )
    result = nb2prod("build", str(path), "-o", str(out))
    assert result.returncode == 2 and "names 'beta', which is not a parameter" in result.stderr


def test_the_first_error_is_printed_once_and_no_note_is_dropped(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "nb.ipynb",
        [
            cell("%matplotlib inline\nimport math", "export"),  # a note first
            cell("model = undefined_one", "train"),
            cell("metrics = {'m': undefined_two}", "metrics"),
        ],
    )
    result = nb2prod("build", str(path), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: ") and "undefined_one" in lines[0]
    assert sum("undefined_one" in line for line in lines) == 1
    assert any("undefined_two" in line for line in lines[1:])
    assert any(line.strip().startswith("note:") and "matplotlib" in line for line in lines[1:])


def test_schedule_macros_are_accepted_by_config_and_image_manifests_alike(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "nb.ipynb", [cell("model = 1", "train")], {"nb2prod": {"schedule": "@daily"}})
    built = nb2prod("build", str(path), "-o", str(tmp_path / "out"))
    assert built.returncode == 0, built.stderr
    assert "schedule: '@daily'" in (tmp_path / "out" / "k8s" / "retrain-cronjob.yaml").read_text()
    for schedule, code in (("@daily", 0), ("0  3 * * *", 2)):
        rendered = nb2prod(
            "image", "manifests", str(tmp_path / "out"), "--schedule", schedule, "-o", str(tmp_path / "m")
        )
        configured = write_notebook(
            tmp_path / "c.ipynb", [cell("model = 1", "train")], {"nb2prod": {"schedule": schedule}}
        )
        config_built = nb2prod("build", str(configured), "-o", str(tmp_path / "c-out"))
        assert (rendered.returncode == 0) == (config_built.returncode == 0) == (code == 0), (
            rendered.stderr,
            config_built.stderr,
        )
