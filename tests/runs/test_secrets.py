"""Secret parameters: an API key passed to training appears nowhere on disk.

The fraud example, copied with a secret parameter `api_key` the job really uses (it checks the
key's length, prints it, its repr and its base64, and records its length as a metric), is built
and trained with both engines, the key given as `env:` and as `file:`. Every byte of the run
folder, the store, the build output, the terminal output and the image's layers is searched for
the key in each spelling (text, repr, JSON, base64, hex): none is found.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fraud" / "fraud_detection.ipynb"
BASE_IMAGE = os.environ.get("NB2PROD_BASE_IMAGE", "nb2prod-base/python:3.11")
KEY_LENGTH = 64
SECRET_LINE = 'api_key = ""  # secret: the scoring service key'


def secret_notebook(folder: Path, parameter_line: str = SECRET_LINE, config: dict | None = None) -> Path:
    """A copy of the fraud example (smaller data, fewer trees) whose job uses a secret API key."""
    nb = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        source = "".join(cell["source"])
        if "parameters" in tags:
            source = source.replace("n_transactions = 20000", "n_transactions = 3000") + "\n" + parameter_line
        if "train" in tags:
            source = (
                "import base64\nimport hashlib\n\n"
                f'assert len(api_key) == {KEY_LENGTH}, "the scoring key has {KEY_LENGTH} characters"\n'
                'print("scoring with key", api_key, repr(api_key), base64.b64encode(api_key.encode()).decode())\n'
                'print("key digest", hashlib.sha256(api_key.encode()).hexdigest())\n'
                + source.replace("n_estimators=n_estimators", "n_estimators=10")
            )
        if "metrics" in tags:
            source = source.replace("metrics = {", 'metrics = {\n    "key_length": float(len(api_key)),')
        cell["source"] = source.splitlines(keepends=True)
    if config is not None:
        nb["metadata"]["nb2prod"] = config
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fraud_detection.ipynb"
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


def spellings(key: str) -> list[bytes]:
    raw = key.encode()
    forms = {
        raw,
        repr(key).encode(),
        json.dumps(key).encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        raw.hex().encode(),
        raw.hex().upper().encode(),
    }
    return sorted(forms)


def leaks_in(data: bytes, key: str) -> list[str]:
    return [form.decode() for form in spellings(key) if form in data]


def leaking_files(folder: Path, key: str) -> list[str]:
    """Every file under `folder` (names included) whose bytes hold a spelling of `key`."""
    found = []
    for path in sorted(folder.rglob("*")):
        if leaks_in(str(path.relative_to(folder)).encode(), key):
            found.append(f"{path} (name)")
        if path.is_file() and not path.is_symlink() and leaks_in(path.read_bytes(), key):
            found.append(str(path))
    return found


def nb2prod(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nb2prod", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The notebook with the secret parameter, built (the key is in the environment of the build)."""
    from nb2prod.api import build

    folder = tmp_path_factory.mktemp("secret-fraud")
    notebook = secret_notebook(folder)
    build(notebook)
    return folder


@pytest.fixture(scope="module")
def key() -> str:
    value = secrets.token_urlsafe(48)
    assert len(value) == KEY_LENGTH
    return value


def check_run(store: Path, result: subprocess.CompletedProcess, key: str, source: str, engine: str) -> Path:
    assert result.returncode == 0, result.stderr
    (run_dir,) = [p for p in store.iterdir() if p.is_dir() and p.name[:1].isdigit()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["engine"] == engine
    assert record["metrics"]["key_length"] == KEY_LENGTH  # the job had the real key
    assert record["params"]["api_key"] == "***"
    assert record["secrets"] == {"api_key": source}
    assert json.loads((run_dir / "params.json").read_text())["api_key"] == "***"
    printed = (run_dir / ("notebook.ipynb" if engine == "papermill" else "output.log")).read_text()
    assert "scoring with key *** '***' ***" in printed  # scrubbed from what the job printed
    assert "key digest " in printed  # a value derived from the key is the job's to print
    assert leaking_files(store, key) == []
    assert leaks_in((result.stdout + result.stderr).encode(), key) == []
    return run_dir


def test_papermill_run_from_env_holds_no_byte_of_the_key(project: Path, key: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    env = {"SCORING_KEY": key}
    result = nb2prod("train", str(project / "fraud_detection.ipynb"), "-p", "api_key", "env:SCORING_KEY",
                     "--store", str(store), env=env)  # fmt: skip
    run_dir = check_run(store, result, key, "env:SCORING_KEY", "papermill")
    executed = json.loads((run_dir / "notebook.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "api_key" not in "".join(injected[0]["source"])  # papermill never saw the key
    reader = [c for c in executed["cells"] if "nb2prod-secrets" in c["metadata"].get("tags", [])]
    assert "api_key = _nb2prod_secrets[" in "".join(reader[0]["source"])
    assert leaking_files(project / "build", key) == []
    assert "NB2PROD_JOB_SECRETS" not in os.environ


def test_python_run_from_file_holds_no_byte_of_the_key(project: Path, key: str, tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "scoring-key"
    key_file.parent.mkdir()
    key_file.write_text(key + "\n")
    store = tmp_path / "store"
    result = nb2prod("train", str(project / "fraud_detection.ipynb"), "--engine", "python", "-p", "api_key",
                     f"file:{key_file}", "--store", str(store))  # fmt: skip
    check_run(store, result, key, f"file:{key_file}", "python")
    assert leaking_files(project / "build", key) == []


def test_a_model_that_stores_the_key_is_removed_and_the_run_fails(key: str, tmp_path: Path) -> None:
    notebook = secret_notebook(tmp_path / "keeps-key")
    nb = json.loads(notebook.read_text())
    train = next(c for c in nb["cells"] if "train" in c["metadata"].get("tags", []))
    train["source"] = "".join(train["source"]) + "\nmodel.scoring_key = api_key\n"
    notebook.write_text(json.dumps(nb))
    store = tmp_path / "store"
    result = nb2prod("train", str(notebook), "--engine", "python", "-p", "api_key", "env:SCORING_KEY",
                     "--store", str(store), env={"SCORING_KEY": key})  # fmt: skip
    assert result.returncode == 1
    (run_dir,) = [p for p in store.iterdir() if p.is_dir() and p.name[:1].isdigit()]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "errored" and record["failure"]["error_type"] == "SecretInArtifact"
    assert "model/model.skops held the value of a secret parameter" in record["failure"]["message"]
    assert not (run_dir / "model" / "model.skops").exists()
    assert leaking_files(store, key) == []
    assert leaks_in((result.stdout + result.stderr).encode(), key) == []


def test_package_entry_point_reads_the_key_and_writes_it_nowhere(project: Path, key: str, tmp_path: Path) -> None:
    build_dir = project / "build" / "fraud-detection"
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": f"{build_dir / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    base = [sys.executable, "-m", "fraud_detection.train"]
    literal = subprocess.run([*base, "--api_key", key, "--output", str(out)], capture_output=True, text=True, env=env)
    assert literal.returncode == 2 and "env:VARIABLE or file:PATH" in literal.stderr
    assert leaks_in((literal.stdout + literal.stderr).encode(), key) == []
    # $NB2PROD_SECRET_API_KEY is the documented fallback (what the Kubernetes manifests set)
    result = subprocess.run([*base, "--output", str(out)], capture_output=True, text=True,
                            env={**env, "NB2PROD_SECRET_API_KEY": key}, cwd=project)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["metrics"]["key_length"] == KEY_LENGTH
    assert "scoring with key *** '***' ***" in result.stdout
    assert json.loads((out / "params.json").read_text())["api_key"] == "***"
    assert leaking_files(out, key) == []
    assert leaks_in((result.stdout + result.stderr).encode(), key) == []


def test_generated_tests_read_the_key_from_the_documented_variable(project: Path, key: str) -> None:
    build_dir = project / "build" / "fraud-detection"
    env = {**os.environ, "PYTHONPATH": f"{build_dir / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_contract.py"]
    given = subprocess.run(command, cwd=build_dir, capture_output=True, text=True,
                           env={**env, "NB2PROD_SECRET_API_KEY": key})  # fmt: skip
    assert given.returncode == 0, given.stdout[-2000:]
    assert leaks_in((given.stdout + given.stderr).encode(), key) == []
    assert leaking_files(build_dir, key) == []


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("LITERAL", "parameter 'api_key' is secret: pass its value as env:VARIABLE or file:PATH"),
        ("env:NB2PROD_TEST_UNSET_KEY", "the environment variable NB2PROD_TEST_UNSET_KEY is not set"),
        ("file:MISSING", "cannot read the file"),
        ("file:FOLDER", "cannot read the file"),
    ],
)
def test_refusals_are_one_sentence_exit_2_and_leave_no_run(
    project: Path, key: str, tmp_path: Path, reference: str, expected: str
) -> None:
    reference = {"LITERAL": key, "file:MISSING": f"file:{tmp_path / 'nope'}", "file:FOLDER": f"file:{tmp_path}"}.get(
        reference, reference
    )
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k != "NB2PROD_TEST_UNSET_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "nb2prod", "train", str(project / "fraud_detection.ipynb"), "-p", "api_key",
         reference, "--store", str(store)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [x for x in result.stderr.strip().splitlines() if not x.startswith("store: ")]  # the store rule's line
    assert len(lines) == 1 and lines[0].startswith("error: -p api_key: ") and expected in lines[0]
    assert lines[0].count(". ") == 0 and "Traceback" not in result.stderr
    assert leaks_in((result.stdout + result.stderr).encode(), key) == []
    assert not store.exists() or not [p for p in store.iterdir() if not p.name.startswith(".")]


def test_a_sweep_refuses_to_vary_a_secret(project: Path) -> None:
    result = nb2prod("sweep", str(project / "fraud_detection.ipynb"), "--grid", "api_key=a,b")
    assert result.returncode == 2
    assert "parameter 'api_key' is secret, so a sweep cannot vary it" in result.stderr


def test_build_records_the_secret_without_a_default(project: Path) -> None:
    build_dir = project / "build" / "fraud-detection"
    schema = json.loads((build_dir / "nb2prod.json").read_text())["parameters"]["api_key"]
    assert schema["secret"] is True and "default" not in schema
    for name in [n for n in sys.modules if n.startswith("fraud_detection")]:
        del sys.modules[name]  # another test's build of the example may have been imported
    sys.path.insert(0, str(build_dir / "src"))
    try:
        from fraud_detection.params import Params

        shown = repr(Params(api_key="hidden-value-1234"))
    finally:
        sys.path.remove(str(build_dir / "src"))
        for name in [n for n in sys.modules if n.startswith("fraud_detection")]:
            del sys.modules[name]
    assert "hidden-value-1234" not in shown and "n_transactions=3000" in shown


def test_manifests_take_the_key_from_a_secret_key_ref(project: Path) -> None:
    build_dir = project / "build" / "fraud-detection"
    for relative in ("k8s/train-job.yaml", "k8s/retrain-cronjob.yaml"):
        document = yaml.safe_load((build_dir / relative).read_text())
        spec = document["spec"].get("jobTemplate", document)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["NB2PROD_SECRET_API_KEY"] == {
            "name": "NB2PROD_SECRET_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "fraud-detection-secrets", "key": "api_key"}},
        }
        args = container["args"]
        assert args[args.index("--api_key") + 1] == "env:NB2PROD_SECRET_API_KEY"
    component = yaml.safe_load((build_dir / "kubeflow/component.yaml").read_text())
    assert "api_key" not in [i["name"] for i in component["inputs"]]
    assert "fraud-detection-secrets" in component["metadata"]["annotations"]["nb2prod.io/secrets"]


def test_config_secrets_and_secret_name(tmp_path: Path) -> None:
    from nb2prod.api import build

    notebook = secret_notebook(
        tmp_path / "listed",
        'api_key = "sk-notebook-literal-0042"  # the scoring service key',
        config={"secrets": ["api_key"], "secret_name": "scoring-keys"},
    )
    line = next(  # the parameter line is the parameters cell's last
        len("".join(c["source"]).splitlines())
        for c in json.loads(notebook.read_text())["cells"]
        if "parameters" in c["metadata"].get("tags", [])
    )
    checked = nb2prod("check", str(notebook))  # analysed (not built yet): the note is shown
    result = build(notebook)
    notes = [f for f in result.notes if f.code == "secret-default"]
    assert len(notes) == 1 and notes[0].location.cell_index == 1 and notes[0].location.line == line
    build_dir = tmp_path / "listed" / "build" / "fraud-detection"
    assert leaking_files(build_dir, "sk-notebook-literal-0042") == []
    assert checked.returncode == 1 and "has not been built" in checked.stdout
    assert f"cell 2 (id parameters, parameters), line {line}: secret parameter 'api_key' has a value" in checked.stderr
    assert "sk-notebook-literal-0042" not in checked.stdout + checked.stderr
    assert json.loads((build_dir / "nb2prod.json").read_text())["parameters"]["api_key"]["secret"] is True
    job = yaml.safe_load((build_dir / "k8s/train-job.yaml").read_text())
    refs = [e["valueFrom"]["secretKeyRef"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
            if "secretKeyRef" in e.get("valueFrom", {})]  # fmt: skip
    assert refs == [{"name": "scoring-keys", "key": "api_key"}]

    unknown = secret_notebook(tmp_path / "unknown", config={"secrets": ["api_token"]})
    checked = nb2prod("check", str(unknown))
    assert checked.returncode != 0
    assert "config `secrets` lists 'api_token', which is not a parameter" in checked.stdout + checked.stderr


# --- the image ------------------------------------------------------------------------------------


def layer_leaks(saved: Path, key: str) -> list[str]:
    """Every member of a `docker save` archive, and every file in each of its layers, holding the key."""
    found = []
    with tarfile.open(saved) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            if leaks_in(data, key):
                found.append(member.name)
            try:
                layer = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            except tarfile.TarError:
                continue  # a config or manifest (searched above)
            with layer:
                for entry in layer.getmembers():
                    if leaks_in(entry.name.encode(), key):
                        found.append(f"{member.name}:{entry.name} (name)")
                    if entry.isfile():
                        if leaks_in(layer.extractfile(entry).read(), key):  # type: ignore[union-attr]
                            found.append(f"{member.name}:{entry.name}")
    return found


def _dangling() -> list[str]:
    listed = subprocess.run(["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true"],
                            capture_output=True, text=True)  # fmt: skip
    return listed.stdout.split()


def test_image_layers_hold_no_byte_of_the_key(project: Path, key: str, tmp_path: Path) -> None:
    from nb2prod.deploy.image import EngineUnavailable, build_image, docker_api

    try:
        docker_api()
    except EngineUnavailable as exc:
        pytest.fail(f"{exc.message} (.ci/run starts the engine and makes the base image with .ci/docker.sh)")
    # train first, so a run sits beside the build, then build the image with the key in the environment
    store = project / "runs"
    trained = nb2prod("train", str(project / "fraud_detection.ipynb"), "--engine", "python", "-p", "api_key",
                      "env:SCORING_KEY", "--store", str(store), env={"SCORING_KEY": key})  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    tag = f"nb2prod-test/secret-fraud:{secrets.token_hex(4)}"
    dangling = set(_dangling())
    os.environ["SCORING_KEY"] = key
    try:
        result = build_image(project / "build" / "fraud-detection", tags=(tag,), base_image=BASE_IMAGE,
                             wheelhouse=tmp_path / "wheelhouse", offline=True)  # fmt: skip
        assert tag in result.tags
        saved = tmp_path / "image.tar"
        subprocess.run(["docker", "save", "-o", str(saved), tag], check=True, capture_output=True)
        assert saved.stat().st_size > 10_000_000  # the whole image, base layers included
        assert layer_leaks(saved, key) == []
        # the search reads inside the layers: the package's own code is found there
        assert any(name.endswith("fraud_detection/_runtime.py") for name in layer_leaks(saved, "SECRET_ENV_PREFIX"))
        inspected = subprocess.run(["docker", "image", "inspect", tag], check=True, capture_output=True).stdout
        assert leaks_in(inspected, key) == []
    finally:
        os.environ.pop("SCORING_KEY", None)
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
        for image in set(_dangling()) - dangling:  # the build stages this test left behind
            subprocess.run(["docker", "image", "rm", image], capture_output=True)
    assert leaking_files(project, key) == []  # notebook folder, build, runs
    shutil.rmtree(tmp_path / "wheelhouse", ignore_errors=True)
