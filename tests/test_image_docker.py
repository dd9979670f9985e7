"""Images built and run on a real Docker engine (`.ci/docker.sh` installs and starts it, and makes
the local base image; no registry is reachable, so every build uses that base and a wheelhouse)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from nb2prod.deploy.image import ImageBuildResult, ImageContext, build_image, render_image_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fraud" / "fraud_detection.ipynb"
BASE_IMAGE = os.environ.get("NB2PROD_BASE_IMAGE", "nb2prod-base/python:3.11")
RUN_ID = uuid.uuid4().hex[:8]
HOSTILE_LABEL = 'risk "ml" $HOME ${PATH} $(id) `id` \' # RUN id'
TRANSACTIONS = [
    {
        "amount": 12.5,
        "hour": 14,
        "merchant_category": 0,
        "distance_from_home": 1.5,
        "card_present": 1,
        "velocity_1h": 0,
    },
    {
        "amount": 2400.0,
        "hour": 3,
        "merchant_category": 8,
        "distance_from_home": 420.0,
        "card_present": 0,
        "velocity_1h": 6,
    },
]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (.ci/run starts the engine and makes the base image with .ci/docker.sh)")
    pytest.skip(f"{reason}; run `bash .ci/docker.sh` to start an engine and make the base image")


@pytest.fixture(scope="module")
def docker_client():
    import docker

    from nb2prod.deploy.image import EngineUnavailable, docker_api

    try:
        docker_api()
    except EngineUnavailable as exc:
        _unavailable(exc.message)
    client = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), version="auto")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _unavailable(f"the base image {BASE_IMAGE} is missing")
    made: list[str] = []
    client.nb2prod_made = made  # tags to remove at the end
    dangling_before = {image.id for image in client.images.list(filters={"dangling": True})}
    yield client
    for tag in made:
        try:
            client.images.remove(tag, force=True, noprune=False)
        except docker.errors.APIError:
            pass
    # The untagged images of the build stages these tests left behind (their build cache).
    for image in client.images.list(filters={"dangling": True}):
        if image.id not in dangling_before:
            try:
                client.images.remove(image.id, noprune=False)
            except docker.errors.APIError:
                pass
    client.close()


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse")


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


@dataclass(frozen=True)
class Built:
    repo: Path
    build_dir: Path
    tag: str
    result: ImageBuildResult


def build_example(repo: Path, client, wheelhouse: Path, tag: str) -> Built:
    from nb2prod.api import build

    build_dir = repo / "build" / "fraud-detection"
    build(repo / "fraud_detection.ipynb", output=build_dir)
    result = build_image(build_dir, tags=(tag,), base_image=BASE_IMAGE, wheelhouse=wheelhouse, offline=True)
    client.nb2prod_made.append(tag)
    return Built(repo, build_dir, tag, result)


@pytest.fixture(scope="module")
def fraud(docker_client, wheelhouse, tmp_path_factory) -> Built:
    """The fraud example, in a git repository of its own, built offline on the local base image."""
    repo = tmp_path_factory.mktemp("fraud-repo")
    shutil.copy(EXAMPLE, repo / "fraud_detection.ipynb")
    git(repo, "init", "-q")
    git(repo, "add", "fraud_detection.ipynb")
    git(repo, "commit", "-q", "-m", "notebook")
    (repo / ".gitignore").write_text("build/\n")
    return build_example(repo, docker_client, wheelhouse, f"nb2prod-test/fraud-detection:{RUN_ID}")


def runs_folder(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)  # the container runs as uid 10001
    return runs


def run_container(client, image: str, args: list[str], **kwargs) -> str:
    output = client.containers.run(image, args, remove=True, stdout=True, stderr=True, **kwargs)
    return output.decode()


# --- the fraud example --------------------------------------------------------------------------


def test_fraud_image_builds_offline_with_lineage_labels(fraud: Built, docker_client, wheelhouse: Path) -> None:
    result = fraud.result
    assert result.offline
    assert fraud.tag in result.tags
    image = docker_client.images.get(fraud.tag)
    labels = image.labels
    manifest = json.loads((fraud.build_dir / "nb2prod.json").read_text())
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.title"] == "fraud-detection"
    assert labels["io.nb2prod.source.sha256"] == manifest["source"]["sha256"]
    assert labels["org.opencontainers.image.revision"] == git(fraud.repo, "rev-parse", "HEAD")
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Config"]["Entrypoint"] == ["/opt/venv/bin/python", "/opt/app/entrypoint.py"]
    assert result.size == image.attrs["Size"] > docker_client.images.get(BASE_IMAGE).attrs["Size"]
    # Nothing from outside: the wheelhouse holds every dependency and the build backend.
    wheels = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"scikit_learn", "pandas", "numpy", "hatchling"} <= wheels


def test_train_in_a_container_writes_the_run_to_a_mounted_volume(fraud: Built, docker_client, tmp_path: Path) -> None:
    runs = runs_folder(tmp_path)
    out = run_container(
        docker_client,
        fraud.tag,
        ["train", "-p", "n_transactions", "6000", "-p", "n_estimators", "25", "--output", "/runs/first"],
        volumes={str(runs): {"bind": "/runs", "mode": "rw"}},
    )
    summary = json.loads(out.strip().splitlines()[-1])
    run = runs / "first"
    assert (run / "model.joblib").is_file()
    digest = hashlib.sha256((run / "model.joblib").read_bytes()).hexdigest()
    assert summary["sha256"] == digest
    params = json.loads((run / "params.json").read_text())
    assert params["n_transactions"] == 6000 and params["n_estimators"] == 25 and params["seed"] == 42
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recall"] >= params["min_recall"] and metrics["precision"] >= params["min_precision"]
    assert (run / "model.joblib").stat().st_uid == 10001  # written by the non-root user


def test_predict_in_a_container_on_json_input(fraud: Built, docker_client, tmp_path: Path) -> None:
    runs = runs_folder(tmp_path)
    mount = {str(runs): {"bind": "/runs", "mode": "rw"}}
    run_container(
        docker_client, fraud.tag, ["train", "-p", "n_transactions", "6000", "--output", "/runs/m"], volumes=mount
    )
    (runs / "input.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TRANSACTIONS))
    out = run_container(
        docker_client, fraud.tag, ["predict", "/runs/m/model.joblib", "/runs/input.jsonl"], volumes=mount
    )
    predictions = [json.loads(line) for line in out.strip().splitlines()]
    assert len(predictions) == len(TRANSACTIONS)
    assert all(0.0 <= p <= 1.0 for p in predictions)
    assert predictions[0] < 0.5 < predictions[1]  # a small daytime purchase vs. a large night-time online one
    # The same through stdin, as `docker run -i IMAGE predict MODEL -` is used.
    proc = subprocess.run(
        ["docker", "run", "--rm", "-i", "-v", f"{runs}:/runs:ro", fraud.tag, "predict", "/runs/m/model.joblib", "-"],
        input="".join(json.dumps(row) + "\n" for row in TRANSACTIONS),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line) for line in proc.stdout.strip().splitlines()] == predictions


def test_a_sweep_point_runs_from_the_rendered_indexed_job(fraud: Built, docker_client, tmp_path: Path) -> None:
    import yaml

    from nb2prod.deploy.cluster_manifests import ManifestContext, parameters_from_schema, render_manifest_files

    manifest = json.loads((fraud.build_dir / "nb2prod.json").read_text())
    ctx = ManifestContext(
        dist_name="fraud-detection",
        version="0.1.0",
        image=fraud.tag,
        parameters=parameters_from_schema(manifest["parameters"]),
        grid={"n_estimators": [5, 12], "n_transactions": [4000]},
    )
    job = yaml.safe_load(render_manifest_files(ctx)["k8s/sweep-job.yaml"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    grid_env = next(e["value"] for e in container["env"] if e["name"] == "NB2PROD_SWEEP_GRID").replace("$$", "$")
    runs = runs_folder(tmp_path)
    args = [a.replace("$(SWEEP_JOB)", "sweep").replace("$(SWEEP_INDEX)", "1") for a in container["args"]]
    run_container(
        docker_client,
        container["image"],
        args,
        environment={"NB2PROD_SWEEP_GRID": grid_env, "JOB_COMPLETION_INDEX": "1"},
        volumes={str(runs): {"bind": "/runs", "mode": "rw"}},
    )
    params = json.loads((runs / "sweep" / "point-1" / "params.json").read_text())
    assert params["n_estimators"] == 12 and params["n_transactions"] == 4000


def test_a_code_only_change_reuses_the_dependency_layers(
    fraud: Built, docker_client, wheelhouse: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "changed"
    shutil.copytree(fraud.repo, repo, ignore=shutil.ignore_patterns("build"))
    notebook = json.loads((repo / "fraud_detection.ipynb").read_text())
    export = next(c for c in notebook["cells"] if "def build_features" in "".join(c["source"]))
    source = "".join(export["source"])
    export["source"] = source.replace('"""Model features', '"""Model features (changed only in code)', 1)
    assert export["source"] != source
    (repo / "fraud_detection.ipynb").write_text(json.dumps(notebook, indent=1))
    changed = build_example(repo, docker_client, wheelhouse, f"nb2prod-test/fraud-detection:{RUN_ID}-changed")
    steps = {step.instruction: step for step in changed.result.steps}
    install = next(s for text, s in steps.items() if "--requirement /opt/app/requirements.lock" in text)
    venv = next(s for text, s in steps.items() if text.startswith("COPY --from=deps /opt/venv"))
    source_copy = next(s for text, s in steps.items() if text.startswith("COPY src/"))
    assert install.cached and venv.cached
    assert not source_copy.cached  # the change did reach the image
    assert "Using cache" in changed.result.log
    old_layers = docker_client.images.get(fraud.tag).attrs["RootFS"]["Layers"]
    new_layers = docker_client.images.get(changed.tag).attrs["RootFS"]["Layers"]
    base_layers = len(docker_client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"])
    # Same layers up to and including the dependency venv; only the small package layers differ.
    shared = next(i for i, (a, b) in enumerate(zip(old_layers, new_layers)) if a != b)
    assert shared >= base_layers + 2  # the base, the user, the venv
    assert len(new_layers) == len(old_layers)
    image = docker_client.images.get(changed.tag)
    assert (
        image.labels["io.nb2prod.source.sha256"]
        != docker_client.images.get(fraud.tag).labels["io.nb2prod.source.sha256"]
    )


# --- a small hand-made build folder: a server, hostile labels, the CLI --------------------------

SERVE_PY = """\
import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")


def main(argv):
    port = int(os.environ["NB2PROD_PORT"])
    http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    """A build folder with no dependencies (an empty requirements.lock) and a server."""
    root = tmp_path_factory.mktemp("toy")
    ctx = ImageContext(
        dist_name="toy-server",
        package="toy_server",
        version="1.0.0+local.1",
        serve_entry="toy_server.serve:main",
        serve_port=8123,
        labels={"org.example.team": HOSTILE_LABEL},
    )
    files = render_image_files(ctx)
    files.update(
        {
            "pyproject.toml": '[build-system]\nrequires = ["hatchling>=1.21"]\nbuild-backend = "hatchling.build"\n\n'
            '[project]\nname = "toy-server"\nversion = "1.0.0+local.1"\nreadme = "README.md"\n\n'
            '[tool.hatch.build.targets.wheel]\npackages = ["src/toy_server"]\n',
            "README.md": "# toy\n",
            "requirements.lock": "# nothing pinned\n",
            "src/toy_server/__init__.py": "",
            "src/toy_server/serve.py": SERVE_PY,
            "src/toy_server/train.py": "def main(argv):\n    print('trained', argv)\n",
            "src/toy_server/predict.py": "def main(argv):\n    print('predicted', argv)\n",
            "notes.txt": "not part of the image\n",
        }
    )
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_cli_builds_the_image_and_reports_id_size_and_tags(toy_dir: Path, docker_client, wheelhouse: Path) -> None:
    tag, second_tag = f"nb2prod-test/toy-server:{RUN_ID}", f"localhost:5000/team/toy-server:{RUN_ID}"
    docker_client.nb2prod_made.extend([tag, second_tag])
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "image", "build", str(toy_dir), "--tag", tag, "-t", second_tag,
         "--base-image", BASE_IMAGE, "--wheelhouse", str(wheelhouse)],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Step 1/" in proc.stderr  # progress streamed as it builds
    last = proc.stdout.strip().splitlines()[-1]
    image = docker_client.images.get(tag)
    assert last.startswith(f"image {image.id} ") and f" MB {second_tag} {tag} (" in last
    assert sorted(image.tags) == sorted([tag, second_tag])
    # Labels carry hostile text verbatim: quoted, not interpreted.
    assert image.labels["org.example.team"] == HOSTILE_LABEL
    assert image.labels["org.opencontainers.image.version"] == "1.0.0+local.1"
    # .dockerignore kept the rest of the folder out of the image.
    listing = run_container(docker_client, tag, ["sh", "-c", "ls /opt/app /src 2>&1; echo; id -u"])
    assert "notes.txt" not in listing and listing.strip().endswith("10001")
    assert run_container(docker_client, tag, ["train", "-p", "a", "1"]).strip() == "trained ['--a', '1']"


def test_serving_container_turns_healthy(toy_dir: Path, docker_client) -> None:
    tag = f"nb2prod-test/toy-server:{RUN_ID}-serve"
    build_image(toy_dir, tags=(tag,), base_image=BASE_IMAGE)
    docker_client.nb2prod_made.append(tag)
    second = 1_000_000_000
    container = docker_client.containers.run(
        tag, ["serve"], detach=True,
        healthcheck={"test": ["CMD", "/opt/venv/bin/python", "/opt/app/healthcheck.py"],
                     "interval": second, "timeout": 3 * second, "retries": 3},
    )  # fmt: skip
    try:
        status = None
        for _ in range(120):  # bounded wait for the first health checks
            container.reload()
            status = container.attrs["State"].get("Health", {}).get("Status")
            if status in ("healthy", "unhealthy") or container.status == "exited":
                break
            time.sleep(0.5)
        assert status == "healthy", container.logs().decode()
    finally:
        container.remove(force=True)
    image = docker_client.images.get(tag)
    assert image.attrs["Config"]["Healthcheck"]["Test"][-1] == "/opt/app/healthcheck.py"
    assert "8123/tcp" in image.attrs["Config"]["ExposedPorts"]


def test_no_engine_is_one_clear_sentence_and_exit_2(toy_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "image", "build", str(toy_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: no Docker engine answers at unix://{tmp_path}/no-engine.sock (no socket there); "
        "start dockerd or set DOCKER_HOST."
    ]
    assert "Traceback" not in proc.stderr


def test_nb2prod_build_image_does_both_steps(fraud: Built, docker_client, wheelhouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "build", str(fraud.repo / "fraud_detection.ipynb"), "-o", str(out),
         "--base-image", BASE_IMAGE, "--image", "--wheelhouse", str(wheelhouse), "--quiet"],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "Dockerfile").is_file()
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("image sha256:") and last.split()[4] == "fraud-detection:0.1.0"
    image = docker_client.images.get("fraud-detection:0.1.0")
    assert image.labels["org.opencontainers.image.base.name"] == BASE_IMAGE


def test_a_filled_wheelhouse_is_reused_without_pip(fraud: Built, wheelhouse: Path) -> None:
    from nb2prod.deploy.image import fill_wheelhouse

    messages: list[str] = []
    count = fill_wheelhouse(fraud.build_dir, wheelhouse, "3.11", messages.append)
    assert count == len(list(wheelhouse.glob("*.whl"))) > 10
    assert messages == [f"wheelhouse: {wheelhouse} already holds the wheels of this lock file\n"]


def test_image_build_of_a_notebook_builds_it_first(
    fraud: Built, docker_client, wheelhouse: Path, tmp_path: Path
) -> None:
    tag = f"nb2prod-test/fraud-detection:{RUN_ID}-nb"
    docker_client.nb2prod_made.append(tag)
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "image", "build", str(fraud.repo / "fraud_detection.ipynb"),
         "-o", str(tmp_path / "out"), "-t", tag, "--base-image", BASE_IMAGE, "--wheelhouse", str(wheelhouse),
         "--format", "json", "-q"],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"built {tmp_path / 'out'}" in proc.stderr
    result = json.loads(proc.stdout)
    assert tag in result["tags"] and result["offline"] is True
    assert result["image_id"] == docker_client.images.get(tag).id
    # Same notebook, same lock and wheelhouse: the dependency install comes from the cache.
    install = next(s for s in result["steps"] if "--requirement /opt/app/requirements.lock" in s["instruction"])
    assert install["cached"]


def test_a_failing_build_is_one_sentence_and_exit_2(toy_dir: Path, docker_client, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(toy_dir, broken)
    (broken / "src" / "toy_server" / "__init__.py").write_text("raise RuntimeError('broken on import')\n")
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "image", "build", str(broken), "-t", f"nb2prod-test/broken:{RUN_ID}",
         "--base-image", BASE_IMAGE, "-q"],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: the image build of {broken} failed: ")
    assert "returned a non-zero code" in lines[0]
    assert lines[0].endswith("; last output: RuntimeError: broken on import")
    from docker.errors import ImageNotFound

    with pytest.raises(ImageNotFound):
        docker_client.images.get(f"nb2prod-test/broken:{RUN_ID}")


# --- a notebook with a hostile file name --------------------------------------------------------

HOSTILE_NOTEBOOK = 'x""";__import__("os").system("touch PWNED");"""y $(touch PWNED)\u2028evil==6.6.6.ipynb'


def test_an_image_builds_from_a_hostile_notebook_name_and_runs_nothing(
    docker_client, wheelhouse: Path, tmp_path: Path
) -> None:
    import urllib.parse

    sys.path.insert(0, str(ROOT / "tests"))
    from nbtest_helpers import SMALL_CELLS, cell, write_notebook

    from nb2prod.api import build

    notebook = write_notebook(tmp_path / HOSTILE_NOTEBOOK, [cell(src, *tags) for src, tags in SMALL_CELLS])
    result = build(notebook, output=tmp_path / "out")
    tag = f"nb2prod-test/hostile:{RUN_ID}"
    built = build_image(result.output_dir, tags=(tag,), base_image=BASE_IMAGE, wheelhouse=wheelhouse, offline=True)
    docker_client.nb2prod_made.append(tag)
    image = docker_client.images.get(tag)
    assert image.id == built.image_id
    assert urllib.parse.unquote(image.labels["io.nb2prod.source.notebook"]) == HOSTILE_NOTEBOOK
    help_text = run_container(docker_client, tag, ["train", "--help"])
    assert "--output" in help_text
    check = (
        f"import {result.package}, {result.package}.train, {result.package}.params, {result.package}.predict; "
        "import os; print([n for n in os.listdir('.') if 'PWNED' in n], os.path.exists('/tmp/PWNED'))"
    )
    listing = run_container(docker_client, tag, ["python", "-c", check])
    assert listing.strip() == "[] False"
    assert not list(tmp_path.rglob("PWNED*"))


def test_on_a_terminal_the_image_build_shows_its_steps_on_one_line(
    toy_dir: Path, docker_client, wheelhouse: Path
) -> None:
    """A real build on a pseudo-terminal: `step i/n: INSTRUCTION` redrawn in place, not the engine's
    whole output; the result line last (as piped, where each `Step i/n` line is logged once)."""
    import pty

    tag = f"nb2prod-test/toy-pty:{RUN_ID}"
    docker_client.nb2prod_made.append(tag)
    argv = [sys.executable, "-m", "nb2prod", "image", "build", str(toy_dir), "--tag", tag,
            "--base-image", BASE_IMAGE, "--wheelhouse", str(wheelhouse)]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, argv)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, out
    frames = [f for f in out.split("\r") if f.startswith("step ")]
    assert frames and frames[0].startswith("step 1/"), out
    total = frames[0].split()[1].split("/")[1].rstrip(":")
    assert any(f.startswith(f"step {total}/{total}: ") for f in frames), frames
    assert "Step 1/" not in out  # the engine's own step lines are not echoed on a terminal
    assert out.replace("\r\n", "\n").strip().splitlines()[-1].startswith("image ")
