"""The Airflow DAG of a build (nb2prod/deploy/airflow.py), run by real Apache Airflow.

Airflow lives in its own virtual environment, made once per machine by .ci/airflow.sh from the pins
in .ci/airflow-constraints.txt; each test gets its own AIRFLOW_HOME with a sqlite metadata database.
The DAG's tasks run this Python's nb2prod (config `airflow_command`), so the Airflow environment
needs neither nb2prod nor the example's libraries.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2prod import api
from nb2prod.deploy.airflow import AirflowContext, render_airflow_files
from nb2prod.errors import InputError
from nb2prod.runs.aliases import AliasStore
from nb2prod.runs.store import RunStore

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-01-15"
RAW_COLUMNS = ["amount", "hour", "merchant_category", "distance_from_home", "card_present", "velocity_1h"]


@pytest.fixture(scope="session")
def airflow_venv() -> Path:
    """The Airflow environment of .ci/airflow.sh (installed on first use, then reused)."""
    done = subprocess.run(
        ["bash", str(REPO / ".ci" / "airflow.sh")], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr[-3000:]
    venv = Path(done.stdout.strip().splitlines()[-1])
    assert (venv / "bin" / "airflow").is_file()
    return venv


def _fraud_project(root: Path, *, min_recall: str = "0.5", score: bool = True) -> Path:
    """The fraud example, made small enough to train in seconds, with [tool.nb2prod] airflow on."""
    root.mkdir(parents=True)
    text = (REPO / "examples" / "fraud" / "fraud_detection.ipynb").read_text(encoding="utf-8")
    for old, new in (
        ("n_transactions = 20000", "n_transactions = 4000"),
        ("n_estimators = 100", "n_estimators = 10"),
        ("min_recall = 0.5", f"min_recall = {min_recall}"),
        # the train cell leaves a mark in its working directory, to show where the job ran
        (
            '"model.fit(X_train, y_train)"',
            '"model.fit(X_train, y_train)\\n", "open(\\"trained-here.txt\\", \\"w\\").close()"',
        ),
    ):
        assert old in text
        text = text.replace(old, new)
    notebook = root / "fraud_detection.ipynb"
    notebook.write_text(text, encoding="utf-8")
    command = shlex.join([sys.executable, "-m", "nb2prod"])
    lines = ["[tool.nb2prod]", "airflow = true", f"airflow_command = {json.dumps(command)}"]
    if score:
        lines += ['airflow_score_input = "batches/{{ ds }}.csv"', 'airflow_score_output = "scores/{{ ds }}"']
    (root / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return notebook


def _batch(path: Path, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "amount": rng.lognormal(3.6, 1.0, n).round(2),
            "hour": rng.integers(0, 24, n),
            "merchant_category": rng.integers(0, 10, n),
            "distance_from_home": rng.exponential(10.0, n).round(1),
            "card_present": rng.integers(0, 2, n),
            "velocity_1h": rng.integers(0, 3, n),
        }
    )[RAW_COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def _airflow(venv: Path, home: Path, dags: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
    }
    return subprocess.run(
        [str(venv / "bin" / "airflow"), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )


def _dagbag(venv: Path, home: Path, dags: Path) -> dict:
    """Airflow's DagBag of `dags`: import errors, and each DAG's tasks with their upstream tasks."""
    script = (
        "import json, sys\n"
        "from airflow.models import DagBag\n"
        "bag = DagBag(dag_folder=sys.argv[1], include_examples=False)\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'dags': {d.dag_id: {'schedule': str(d.schedule_interval),\n"
        "    'tasks': {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks}} for d in bag.dags.values()}}))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, str(dags)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _migrate(venv: Path, home: Path, dags: Path) -> None:
    done = _airflow(venv, home, dags, "db", "migrate")
    assert done.returncode == 0, done.stderr[-3000:]


def test_dag_trains_promotes_and_scores_a_daily_batch(airflow_venv: Path, tmp_path: Path) -> None:
    notebook = _fraud_project(tmp_path / "project")
    build = Path(api.build(notebook).output_dir)
    dags = build / "airflow"
    assert sorted(p.name for p in dags.iterdir()) == ["fraud_detection_dag.py"]
    recorded = json.loads((build / "nb2prod.json").read_text())
    assert "airflow/fraud_detection_dag.py" in recorded["files"]  # hashed like every generated file
    batch = _batch(tmp_path / "project" / "batches" / f"{DAY}.csv", 40)

    home = tmp_path / "airflow-home"
    bag = _dagbag(airflow_venv, home, dags)
    assert bag["errors"] == {}
    assert bag["dags"] == {
        "fraud-detection": {
            "schedule": "@daily",
            "tasks": {
                "train": [],
                "check_gates": ["train"],
                "promote": ["check_gates"],
                "score": ["promote"],
            },
        }
    }

    _migrate(airflow_venv, home, dags)
    done = _airflow(airflow_venv, home, dags, "dags", "test", "fraud-detection", DAY)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]

    store = RunStore(tmp_path / "project" / "runs")  # the build's default store, beside the notebook
    runs = store.list()
    assert len(runs) == 1 and runs[0].manifest.status == "succeeded"
    run_id = runs[0].manifest.run_id
    assert AliasStore(store).target("production") == run_id
    # the job ran in the notebook's folder (not in Airflow's or the test's current folder)
    assert (tmp_path / "project" / "trained-here.txt").is_file()
    assert not (Path.cwd() / "trained-here.txt").exists() and not (home / "trained-here.txt").exists()
    output = tmp_path / "project" / "scores" / DAY
    assert (output / "_SUCCESS").is_file()
    parts = sorted(output.glob("*.parquet"))
    assert parts, sorted(p.name for p in output.iterdir())
    scored = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    assert len(scored) == len(batch)
    assert set(scored["run_id"]) == {run_id}
    assert scored["prediction"].between(0.0, 1.0).all()

    # the same day again: a new run is trained and promoted, the day's scores are left as they are
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    again = _airflow(airflow_venv, home, dags, "dags", "test", "fraud-detection", DAY)
    assert again.returncode == 0, (again.stdout + again.stderr)[-5000:]
    assert "already scored" in again.stdout + again.stderr
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert len(store.list()) == 2
    assert AliasStore(store).target("production") != run_id


def test_failed_gate_fails_train_and_nothing_is_promoted(airflow_venv: Path, tmp_path: Path) -> None:
    notebook = _fraud_project(tmp_path / "project", min_recall="1.01")  # recall cannot reach it
    build = Path(api.build(notebook).output_dir)
    dags = build / "airflow"
    _batch(tmp_path / "project" / "batches" / f"{DAY}.csv", 10)
    home = tmp_path / "airflow-home"
    _migrate(airflow_venv, home, dags)

    done = _airflow(airflow_venv, home, dags, "dags", "test", "fraud-detection", DAY)
    assert done.returncode != 0
    log = done.stdout + done.stderr
    assert "quality gate failed" in log
    store = RunStore(tmp_path / "project" / "runs")
    assert [r.manifest.status for r in store.list()] == ["failed-gate"]  # kept for inspection
    assert AliasStore(store).target("production") is None
    assert not (tmp_path / "project" / "scores").exists()


def test_without_score_input_the_dag_has_no_score_task(airflow_venv: Path, tmp_path: Path) -> None:
    notebook = _fraud_project(tmp_path / "project", score=False)
    (tmp_path / "project" / "pyproject.toml").write_text(
        '[tool.nb2prod]\nairflow_schedule = "0 4 * * 1"\n', encoding="utf-8"
    )
    build = Path(api.build(notebook, overrides={"airflow": True}).output_dir)  # as `nb2prod build --airflow`
    bag = _dagbag(airflow_venv, tmp_path / "airflow-home", build / "airflow")
    assert bag["errors"] == {}
    assert bag["dags"]["fraud-detection"] == {
        "schedule": "0 4 * * 1",
        "tasks": {"train": [], "check_gates": ["train"], "promote": ["check_gates"]},
    }
    text = (build / "airflow" / "fraud_detection_dag.py").read_text()
    assert f"STORE = {json.dumps(str(tmp_path / 'project' / 'runs'))}" in text


def test_no_dag_unless_asked(tmp_path: Path) -> None:
    notebook = _fraud_project(tmp_path / "project", score=False)
    (tmp_path / "project" / "pyproject.toml").unlink()
    build = Path(api.build(notebook).output_dir)
    assert not (build / "airflow").exists()
    assert "airflow" not in json.loads((build / "nb2prod.json").read_text())["config"]


def test_values_reach_the_dag_as_python_literals(tmp_path: Path) -> None:
    hostile = 'x"); import os; os.system("echo owned") #\n{{ ds }}\u2028$(id)'
    ctx = AirflowContext(
        dag_id="a.b-c_d",
        package="a_b",
        notebook=hostile,
        build_dir="/b/" + hostile,
        workdir="/w'\"",
        store="/s/$(rm -rf ~)",
        command=("nb2prod", "--x", hostile),
        score_input="/in/" + hostile,
        score_output="out/{{ ds }}",
    )
    (path, text), *_ = render_airflow_files(ctx).items()
    assert path == "airflow/a_b_dag.py"
    compile(text, path, "exec")  # it parses, and every constant reads back exactly as given
    constants = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(text).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id != "GATE_OPS"
    }
    assert constants["BUILD_DIR"] == "/b/" + hostile
    assert constants["WORKDIR"] == "/w'\""
    assert constants["STORE"] == "/s/$(rm -rf ~)"
    assert constants["NB2PROD"] == ["nb2prod", "--x", hostile]
    assert constants["SCORE_INPUT"] == "/in/" + hostile
    assert constants["SCORE_OUTPUT"] == "out/{{ ds }}"
    # the only statements are the DAG's own: nothing from the values became code
    names = [type(node).__name__ for node in ast.parse(text).body]
    assert names.count("Expr") == 1  # the docstring
    assert "\u2028" not in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('airflow = "yes"', "airflow must be true or false"),
        ('airflow_schedule = "every day"', "is not an Airflow schedule"),
        ('airflow_command = ""', "is empty"),
        ('airflow_command = "nb2prod \'unclosed"', "is not a command line"),
    ],
)
def test_bad_airflow_settings_name_the_setting(tmp_path: Path, setting: str, message: str) -> None:
    notebook = _fraud_project(tmp_path / "project", score=False)
    (tmp_path / "project" / "pyproject.toml").write_text(f"[tool.nb2prod]\n{setting}\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "nb2prod", "build", str(notebook)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert message in done.stderr and "[tool.nb2prod]" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "project" / "build").exists()


def test_build_flag_renders_the_dag(tmp_path: Path) -> None:
    notebook = _fraud_project(tmp_path / "project", score=False)
    (tmp_path / "project" / "pyproject.toml").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "nb2prod", "build", "--airflow", "-q", str(notebook)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "project" / "build" / "fraud-detection" / "airflow" / "fraud_detection_dag.py").read_text()
    assert 'SCHEDULE = "@daily"' in text and 'NB2PROD = ["nb2prod"]' in text
    assert "def score" not in text
    dag = tmp_path / "project" / "build" / "fraud-detection" / "airflow" / "fraud_detection_dag.py"

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nb2prod", "check", *flags, str(notebook)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    assert check("--airflow").returncode == 0
    dag.write_text(dag.read_text().replace('SCHEDULE = "@daily"', 'SCHEDULE = "@hourly"'))  # edited by hand
    stale = check("--airflow")
    assert stale.returncode == 1 and "airflow/fraud_detection_dag.py was edited by hand" in stale.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dag_id": "fraud detection"}, "DAG id"),
        ({"build_dir": "build/fraud"}, "must be an absolute path"),
        ({"schedule": "daily"}, "is not an Airflow schedule"),
        ({"command": ()}, "airflow_command is empty"),
    ],
)
def test_context_refuses_what_the_dag_cannot_hold(change: dict, message: str) -> None:
    values = {"dag_id": "fraud", "package": "fraud", "notebook": "f.ipynb", "build_dir": "/b", "workdir": "/w"}
    with pytest.raises(InputError, match=message):
        AirflowContext(**{**values, "store": "/s", **change})
