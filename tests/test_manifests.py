"""Cluster manifests: offline Kubernetes validation, the sweep grid, the Kubeflow component, injection."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from nb2prod.deploy.cluster_manifests import (
    ManifestContext,
    Parameter,
    expand_grid,
    k8s_literal,
    parameters_from_schema,
    parse_grid,
    render_manifest_files,
)
from nb2prod.errors import InputError

PARAMS = (
    Parameter("n_estimators", "int", 100, "number of trees"),
    Parameter("fraud_rate", "float", 0.02, "share of fraud"),
    Parameter("balanced", "bool", True),
    Parameter("label", "str", "is_fraud"),
    Parameter("features", "list", ["a", "b"]),
)
K8S_VERSIONS = ("1.29.0", "latest")


def make_ctx(**changes: Any) -> ManifestContext:
    values: dict[str, Any] = dict(
        dist_name="fraud-detection",
        version="0.1.0",
        image="registry.example.com/ml/fraud-detection:0.1.0",
        parameters=PARAMS,
        grid={"n_estimators": [50, 100, 200], "fraud_rate": [0.01, 0.05]},
        source_sha256="cd" * 32,
    )
    values.update(changes)
    return ManifestContext(**values)


def documents(text: str) -> list[Any]:
    return list(yaml.safe_load_all(text))


def validate(document: dict[str, Any], version: str) -> None:
    import kubernetes_validate

    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(document, version, strict=True)


def k8s_expand(text: str, env: dict[str, str]) -> str:
    """What Kubernetes makes of `$(VAR)` and `$$` in a container's args and env values."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            if text[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            match = re.match(r"\(([A-Za-z_][A-Za-z0-9_]*)\)", text[i + 1 :])
            if match and match.group(1) in env:
                out.append(env[match.group(1)])
                i += 1 + match.end()
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def test_files_and_determinism() -> None:
    files = render_manifest_files(make_ctx())
    assert sorted(files) == [
        "k8s/retrain-cronjob.yaml",
        "k8s/sweep-job.yaml",
        "k8s/train-job.yaml",
        "kubeflow/component.yaml",
    ]
    assert render_manifest_files(make_ctx()) == files
    assert "k8s/sweep-job.yaml" not in render_manifest_files(make_ctx(grid={}))
    for text in files.values():
        assert len(documents(text)) == 1


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", ["k8s/train-job.yaml", "k8s/retrain-cronjob.yaml", "k8s/sweep-job.yaml"])
def test_kubernetes_validate_accepts_every_manifest(path: str, version: str) -> None:
    (document,) = documents(render_manifest_files(make_ctx())[path])
    validate(document, version)


def test_kubernetes_validate_runs_for_real() -> None:
    """The validation above could fail: a wrong field type and an unknown field are both refused."""
    import kubernetes_validate

    (document,) = documents(render_manifest_files(make_ctx())["k8s/sweep-job.yaml"])
    document["spec"]["completions"] = "eighteen"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(document, "latest")
    (document,) = documents(render_manifest_files(make_ctx())["k8s/train-job.yaml"])
    document["spec"]["template"]["spec"]["containers"][0]["imageName"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(document, "latest")


def test_train_job_runs_the_image_with_every_parameter() -> None:
    (job,) = documents(render_manifest_files(make_ctx())["k8s/train-job.yaml"])
    assert job["kind"] == "Job" and job["metadata"]["name"] == "fraud-detection-train"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/ml/fraud-detection:0.1.0"
    args = container["args"]
    assert args[0] == "train"
    pairs = dict(zip(args[1:-2:2], args[2:-2:2]))
    assert pairs == {
        "--n_estimators": "100",
        "--fraud_rate": "0.02",
        "--balanced": "true",
        "--label": "is_fraud",
        "--features": '["a", "b"]',
    }
    assert args[-2:] == ["--output", "/runs/$(RUN_NAME)"]
    assert {"name": "RUN_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "fraud-detection-runs"
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["annotations"]["nb2prod.io/source-sha256"] == "cd" * 32


def test_cronjob_schedule_and_no_overlap() -> None:
    (cron,) = documents(render_manifest_files(make_ctx(schedule="30 2 * * *"))["k8s/retrain-cronjob.yaml"])
    assert cron["kind"] == "CronJob"
    assert cron["spec"]["schedule"] == "30 2 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "train" and container["image"].endswith("fraud-detection:0.1.0")
    assert len(cron["metadata"]["name"]) <= 52  # CronJob names leave room for the Job suffix


def test_sweep_is_an_indexed_job_over_the_whole_grid() -> None:
    ctx = make_ctx(parallelism=4)
    (job,) = documents(render_manifest_files(ctx)["k8s/sweep-job.yaml"])
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == 6 and spec["parallelism"] == 4
    assert spec["maxFailedIndexes"] == 6 and spec["backoffLimitPerIndex"] == 0
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    grid = json.loads(k8s_expand(env["NB2PROD_SWEEP_GRID"]["value"], {}))
    assert grid == expand_grid(ctx.grid)
    assert {tuple(sorted(point.items())) for point in grid} == {
        (("fraud_rate", rate), ("n_estimators", n)) for rate in (0.01, 0.05) for n in (50, 100, 200)
    }
    assert container["args"] == ["sweep", "--output", "/runs/$(SWEEP_JOB)/point-$(SWEEP_INDEX)"]
    annotation = env["SWEEP_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert annotation == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    small = make_ctx(grid={"n_estimators": [1]}, parallelism=8)
    (one,) = documents(render_manifest_files(small)["k8s/sweep-job.yaml"])
    assert one["spec"]["completions"] == 1 and one["spec"]["parallelism"] == 1


def test_kubeflow_component_declares_every_parameter() -> None:
    (component,) = documents(render_manifest_files(make_ctx())["kubeflow/component.yaml"])
    assert component["name"] == "fraud-detection train"
    inputs = {i["name"]: i for i in component["inputs"]}
    assert {name: i["type"] for name, i in inputs.items()} == {
        "n_estimators": "Integer",
        "fraud_rate": "Float",
        "balanced": "Boolean",
        "label": "String",
        "features": "JsonArray",
    }
    assert inputs["n_estimators"]["default"] == "100" and inputs["n_estimators"]["description"] == "number of trees"
    container = component["implementation"]["container"]
    assert container["image"] == "registry.example.com/ml/fraud-detection:0.1.0"
    assert container["command"] == ["/opt/venv/bin/python", "/opt/app/entrypoint.py", "train"]
    referenced = [a["inputValue"] for a in container["args"] if isinstance(a, dict) and "inputValue" in a]
    assert referenced == [p.name for p in PARAMS]
    for position, arg in enumerate(container["args"]):
        if isinstance(arg, dict) and "inputValue" in arg:
            assert container["args"][position - 1] == f"--{arg['inputValue']}"
    assert container["args"][-2:] == ["--output", {"outputPath": "run"}]
    assert [o["name"] for o in component["outputs"]] == ["run"]


# --- injection: values stay values ------------------------------------------------------------

HOSTILE_STRINGS = [
    "a: b\n- c",
    "---\napiVersion: v1\nkind: Secret",
    "$(RUN_NAME) $$(X) $HOME",
    "!!python/object/apply:os.system ['id']",
    "{x: 1}",
    "&anchor *anchor",
    "'\"\\ # %",
]


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
def test_hostile_strings_stay_one_value(hostile: str) -> None:
    params = (*PARAMS[:3], Parameter("label", "str", hostile, hostile), PARAMS[4])
    ctx = make_ctx(parameters=params, grid={"label": [hostile, "plain"]}, description=hostile)
    files = render_manifest_files(ctx)
    for path, text in files.items():
        (document,) = documents(text)  # still one document each
        if path.startswith("k8s/"):
            validate(document, "latest")
    (job,) = documents(files["k8s/train-job.yaml"])
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = [k8s_expand(a, {"RUN_NAME": "pod-1"}) for a in container["args"]]
    assert args[args.index("--label") + 1] == hostile
    assert args[-1] == "/runs/pod-1"
    assert len(container["args"]) == 1 + 2 * len(params) + 2
    (sweep,) = documents(files["k8s/sweep-job.yaml"])
    env = sweep["spec"]["template"]["spec"]["containers"][0]["env"]
    grid = json.loads(k8s_expand(env[0]["value"], {"RUN_NAME": "pod-1"}))
    assert [p["label"] for p in grid] == [hostile, "plain"]
    (component,) = documents(files["kubeflow/component.yaml"])
    assert component["description"] == hostile
    assert {i["name"]: i["default"] for i in component["inputs"]}["label"] == hostile


def test_k8s_literal_round_trips_through_expansion() -> None:
    for text in ("$(RUN_NAME)", "$$", "a$b", "$", "price $5 $(X"):
        assert k8s_expand(k8s_literal(text), {"RUN_NAME": "pod", "X": "x"}) == text


BAD = [
    ({"dist_name": "fraud\nkind: Secret"}, "distribution name"),
    ({"image": "fraud:1.0\n  command: [sh]"}, "image"),
    ({"image": "fraud detection:1"}, "image"),
    ({"schedule": "* * * *"}, "schedule"),
    ({"schedule": "0 3 * * 1\nsuspend: true"}, "schedule"),
    ({"grid": {"unknown": [1]}}, "not a parameter"),
    ({"grid": {"n_estimators": [1, "many"]}}, "not a valid int"),
    ({"grid": {"n_estimators": []}}, "non-empty list"),
    ({"grid": {"balanced": [1]}}, "not a valid bool"),
    ({"grid": {"n_estimators": list(range(200)), "fraud_rate": [0.1] * 60}}, "at most"),
    ({"runs_claim": "Runs_Claim"}, "DNS-1123"),
    ({"cpu": "1; rm"}, "quantity"),
    ({"parallelism": 0}, "positive"),
    ({"output_flag": "--output\n- x"}, "output option"),
    ({"parameters": (Parameter("n", "int", "ten"),)}, "not a valid int"),
]


@pytest.mark.parametrize(("changes", "fragment"), BAD, ids=[f"bad-{i}" for i in range(len(BAD))])
def test_bad_inputs_are_refused(changes: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InputError) as info:
        make_ctx(**changes)
    assert fragment in info.value.message


def test_parameter_names_must_be_identifiers() -> None:
    with pytest.raises(InputError, match="identifier"):
        Parameter("n estimators: 3", "int", 1)
    with pytest.raises(InputError, match="type"):
        Parameter("n", "tuple", 1)


def test_parse_grid_types_values_with_the_schema() -> None:
    grid = parse_grid(
        [
            "n_estimators=50,100",
            "fraud_rate=0.01,1",
            "balanced=true,false",
            "label=a b,c",
            'features=[["x"],["x","y"]]',
        ],
        PARAMS,
    )
    assert grid == {
        "n_estimators": [50, 100],
        "fraud_rate": [0.01, 1.0],
        "balanced": [True, False],
        "label": ["a b", "c"],
        "features": [["x"], ["x", "y"]],
    }
    assert isinstance(grid["fraud_rate"][1], float)
    with pytest.raises(InputError, match="NAME=VALUE1,VALUE2"):
        parse_grid(["n_estimators"], PARAMS)
    with pytest.raises(InputError, match="not a parameter"):
        parse_grid(["trees=1,2"], PARAMS)
    with pytest.raises(InputError, match="not a valid int"):
        parse_grid(["n_estimators=1.5"], PARAMS)


def test_parameters_from_the_build_schema() -> None:
    schema = {
        "n_estimators": {"type": "int", "default": 100, "help": "trees", "nullable": False},
        "threshold": {"type": "float", "default": None, "help": "", "nullable": True},
    }
    params = parameters_from_schema(schema)
    assert [(p.name, p.type, p.default, p.nullable) for p in params] == [
        ("n_estimators", "int", 100, False),
        ("threshold", "float", None, True),
    ]
    ctx = make_ctx(parameters=params, grid={"threshold": [None, 0.5]})
    (job,) = documents(render_manifest_files(ctx)["k8s/train-job.yaml"])
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--threshold") + 1] == "null"


# --- `nb2prod image manifests` on a real build ----------------------------------------------------


@pytest.fixture(scope="module")
def fraud_build(tmp_path_factory):
    from pathlib import Path

    from nb2prod.api import build

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("fraud") / "build"
    return Path(build(root / "examples" / "fraud" / "fraud_detection.ipynb", output=out).output_dir)


def cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "nb2prod", *args], capture_output=True, text=True, timeout=120)


def test_cli_renders_valid_manifests_from_the_build_schema(fraud_build, tmp_path) -> None:
    out = tmp_path / "cluster"
    proc = cli("image", "manifests", str(fraud_build), "--image", "registry.example.com/fraud:1",
               "--grid", "n_estimators=50,100", "--grid", "max_depth=[4,8,12]", "--schedule", "@daily",
               "-o", str(out), "--format", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = json.loads(proc.stdout)["files"]
    assert written == [
        "k8s/retrain-cronjob.yaml",
        "k8s/sweep-job.yaml",
        "k8s/train-job.yaml",
        "kubeflow/component.yaml",
    ]
    schema = json.loads((fraud_build / "nb2prod.json").read_text())["parameters"]
    for path in written:
        (document,) = documents((out / path).read_text())
        if path.startswith("k8s/"):
            validate(document, "latest")
    (job,) = documents((out / "k8s/train-job.yaml").read_text())
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a[2:] for a in args[1:-2:2]] == list(schema)  # every parameter, in the notebook's order
    assert args[args.index("--n_estimators") + 1] == str(schema["n_estimators"]["default"])
    (sweep,) = documents((out / "k8s/sweep-job.yaml").read_text())
    assert sweep["spec"]["completions"] == 6
    (cron,) = documents((out / "k8s/retrain-cronjob.yaml").read_text())
    assert cron["spec"]["schedule"] == "@daily"


def test_cli_names_a_bad_grid_in_one_sentence(fraud_build, tmp_path) -> None:
    proc = cli("image", "manifests", str(fraud_build), "--grid", "n_estimators=many", "-o", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: the grid entry 'n_estimators=many': 'many' is not a valid int for parameter 'n_estimators'."
    ]
    unknown = cli("image", "manifests", str(fraud_build), "--grid", "trees=1", "-o", str(tmp_path))
    assert unknown.returncode == 2 and "'trees', which is not a parameter" in unknown.stderr


def test_render_build_manifests_takes_the_build_values(fraud_build) -> None:
    from nb2prod.deploy.cluster_manifests import render_build_manifests

    data = json.loads((fraud_build / "nb2prod.json").read_text())
    files = render_build_manifests(
        dist_name=data["package"]["name"],
        version=data["package"]["version"],
        parameter_schema=data["parameters"],
        source_sha256=data["source"]["sha256"],
    )
    assert sorted(files) == ["k8s/retrain-cronjob.yaml", "k8s/train-job.yaml", "kubeflow/component.yaml"]
    (job,) = documents(files["k8s/train-job.yaml"])
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "fraud-detection:0.1.0"
    assert job["metadata"]["annotations"]["nb2prod.io/source-sha256"] == data["source"]["sha256"]
    with_grid = render_build_manifests(
        dist_name="fraud-detection", version="0.1.0", parameter_schema=data["parameters"],
        grid={"seed": [1, 2, 3]}, schedule="@weekly", image="r.example.com/fraud:2",
    )  # fmt: skip
    (sweep,) = documents(with_grid["k8s/sweep-job.yaml"])
    assert sweep["spec"]["completions"] == 3
    assert documents(with_grid["k8s/retrain-cronjob.yaml"])[0]["spec"]["schedule"] == "@weekly"


# --- secret parameters ----------------------------------------------------------------------------

SECRET = Parameter("api_key", "str", None, "secret: the scoring service key", nullable=True, secret=True)


@pytest.mark.parametrize("path", ["k8s/train-job.yaml", "k8s/retrain-cronjob.yaml", "k8s/sweep-job.yaml"])
def test_a_secret_comes_from_a_secret_key_ref_never_a_literal(path: str) -> None:
    files = render_manifest_files(make_ctx(parameters=(*PARAMS, SECRET)))
    (document,) = documents(files[path])
    validate(document, "latest")
    spec = document["spec"].get("jobTemplate", document)["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    refs = [e for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    assert refs == [
        {
            "name": "NB2PROD_SECRET_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "fraud-detection-secrets", "key": "api_key"}},
        }
    ]
    if path != "k8s/sweep-job.yaml":
        args = container["args"]
        assert args[args.index("--api_key") + 1] == "env:NB2PROD_SECRET_API_KEY"


def test_the_secret_name_comes_from_config_and_is_checked() -> None:
    files = render_manifest_files(make_ctx(parameters=(*PARAMS, SECRET), secret_name="ml.scoring-keys"))
    (job,) = documents(files["k8s/train-job.yaml"])
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e["valueFrom"]["secretKeyRef"]["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})] == [
        "ml.scoring-keys"
    ]
    with pytest.raises(InputError, match="is not a DNS-1123 subdomain"):
        make_ctx(parameters=(*PARAMS, SECRET), secret_name="Scoring Keys")


def test_a_sweep_grid_cannot_vary_a_secret() -> None:
    with pytest.raises(InputError, match="'api_key', a secret parameter, which a sweep cannot vary"):
        make_ctx(parameters=(*PARAMS, SECRET), grid={"api_key": ["a", "b"]})


def test_the_kubeflow_component_has_no_input_for_a_secret() -> None:
    (component,) = documents(render_manifest_files(make_ctx(parameters=(*PARAMS, SECRET)))["kubeflow/component.yaml"])
    assert "api_key" not in [i["name"] for i in component["inputs"]]
    assert "--api_key" not in component["implementation"]["container"]["args"]
    annotation = component["metadata"]["annotations"]["nb2prod.io/secrets"]
    assert annotation == "api_key: $NB2PROD_SECRET_API_KEY from Secret fraud-detection-secrets key api_key"


def test_a_secret_in_the_build_schema_has_no_default() -> None:
    (parameter,) = parameters_from_schema(
        {"api_key": {"type": "str", "help": "secret: key", "nullable": False, "secret": True}}
    )
    assert parameter.secret and parameter.default is None and parameter.nullable
