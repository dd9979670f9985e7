"""The generated image serves: `docker run IMAGE serve` answers /readyz and /predict, and its
HEALTHCHECK (on /readyz) says healthy. One image build, on the real Docker engine."""

from __future__ import annotations

import http.client
import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from nb2prod.deploy.image import build_image
from nb2prod.runs.predicting import predict_rows
from nb2prod.runs.store import RunStore

from .conftest import RISKY, TRANSACTION, Answer, call

BASE_IMAGE = os.environ.get("NB2PROD_BASE_IMAGE", "nb2prod-base/python:3.11")
SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def docker_client():
    import docker

    from nb2prod.deploy.image import EngineUnavailable, docker_api

    try:
        docker_api()
    except EngineUnavailable as exc:
        pytest.fail(f"{exc.message} (.ci/run starts the engine and makes the base image with .ci/docker.sh)")
    client = docker.DockerClient(base_url=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), version="auto")
    client.images.get(BASE_IMAGE)
    yield client
    client.close()


def test_docker_run_image_serve_answers_readyz_and_predict(fraud_runs, docker_client, tmp_path: Path):
    tag = f"nb2prod-test/fraud-serve:{uuid.uuid4().hex[:8]}"
    build_image(fraud_runs.build, tags=(tag,), base_image=BASE_IMAGE, wheelhouse=tmp_path / "wheels", offline=True)
    runs = tmp_path / "runs"
    shutil.copytree(fraud_runs.store, runs)
    for path in [runs, *runs.rglob("*")]:  # readable by the image's user (uid 10001)
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = docker_client.containers.run(
        tag,
        ["serve"],
        detach=True,
        volumes={str(runs): {"bind": "/workspace/runs", "mode": "ro"}},
        ports={"8000/tcp": ("127.0.0.1", None)},
        healthcheck={"test": ["CMD", "/opt/venv/bin/python", "/opt/app/healthcheck.py"],
                     "interval": SECOND, "timeout": 3 * SECOND, "retries": 3},
    )  # fmt: skip
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 240
        ready: Answer | None = None
        while time.monotonic() < deadline:
            try:
                ready = call(port, "GET", "/readyz")
                if ready.status == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            container.reload()
            assert container.status != "exited", container.logs().decode()
            time.sleep(0.5)
        assert ready is not None and ready.status == 200, container.logs().decode()
        assert ready.json["run"] == fraud_runs.a
        rows = [TRANSACTION, RISKY]
        answer = call(port, "POST", "/predict", {"instances": rows})
        assert answer.status == 200, answer.text
        assert answer.json["predictions"] == predict_rows(RunStore(fraud_runs.store), "production", rows)
        refused = call(port, "POST", "/predict", {"instances": [{**TRANSACTION, "amount": "abc"}]})
        assert refused.status == 422 and refused.json["field"] == "amount"
        status = None
        for _ in range(120):
            container.reload()
            status = container.attrs["State"].get("Health", {}).get("Status")
            if status in ("healthy", "unhealthy"):
                break
            time.sleep(0.5)
        assert status == "healthy", container.logs().decode()
        logs = container.logs().decode()
        assert "serving on http://0.0.0.0:8000" in logs and f"serving run {fraud_runs.a}" in logs
    finally:
        container.remove(force=True)
        image = docker_client.images.get(tag)
        health = image.attrs["Config"]["Healthcheck"]
        docker_client.images.remove(tag, force=True)
    assert health["Test"][-1] == "/opt/app/healthcheck.py" and "8000/tcp" in image.attrs["Config"]["ExposedPorts"]
    # the image's own HEALTHCHECK asks /readyz
    assert (
        '"/readyz"' in (fraud_runs.build / "docker" / "healthcheck.py").read_text().replace("'", '"')
        or "/readyz" in (fraud_runs.build / "docker" / "healthcheck.py").read_text()
    )
