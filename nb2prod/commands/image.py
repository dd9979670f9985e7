"""`nb2prod image build` and `nb2prod image manifests`."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from nb2prod.errors import InputError

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)


@click.group()
def image() -> None:
    """Build a build's container image; render its Kubernetes and Kubeflow manifests."""


def resolve_build_dir(target: Path, output: Path | None) -> Path:
    """A build folder for TARGET: the folder itself, or the output of building a notebook."""
    if target.is_dir():
        if not (target / "Dockerfile").is_file():
            raise InputError(f"{target} has no Dockerfile; pass a build folder made by `nb2prod build` or a notebook.")
        return target
    from nb2prod.textnotebook import is_notebook_path

    if not is_notebook_path(target):
        raise InputError(f"{target} is neither a build folder nor a notebook (.ipynb, or a jupytext .py).")
    from nb2prod.api import build as build_notebook

    result = build_notebook(target, output=output)
    click.echo(f"built {result.output_dir}", err=True)
    return Path(result.output_dir)


def read_build_manifest(build_dir: Path) -> dict[str, Any]:
    path = build_dir / "nb2prod.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not readable JSON ({exc}).") from exc
    return data if isinstance(data, dict) else {}


def default_image_tag(build_dir: Path) -> str:
    """NAME:VERSION of the build (from nb2prod.json, else pyproject.toml)."""
    from nb2prod.deploy.image import default_tag

    package = read_build_manifest(build_dir).get("package") or {}
    name, version = package.get("name"), package.get("version")
    if not (isinstance(name, str) and isinstance(version, str)):
        import tomllib

        try:
            project = tomllib.loads((build_dir / "pyproject.toml").read_text(encoding="utf-8")).get("project", {})
        except (OSError, ValueError):
            project = {}
        name, version = project.get("name"), project.get("version")
    if not (isinstance(name, str) and isinstance(version, str)):
        name, version = build_dir.resolve().name, "latest"
    return default_tag(name, version)


@image.command("build")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-t",
    "--tag",
    "tags",
    multiple=True,
    metavar="NAME[:TAG]",
    help="Tag the image (repeatable); default NAME:VERSION of the build.",
)
@click.option(
    "--base-image",
    default=None,
    metavar="IMAGE",
    help="Base image for every stage (build argument BASE_IMAGE); default the official python:X.Y-slim.",
)
@click.option(
    "--wheelhouse",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[DIR]",
    help="Build offline: make wheels of requirements.lock and the build backend on this machine "
    "(kept in DIR if given) and install only from them.",
)
@click.option("--no-cache", "nocache", is_flag=True, help="Rebuild every layer.")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to build a NOTEBOOK target (default build/NAME beside it).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the result, not the build's progress.")
@FORMAT
def build(
    target: Path,
    tags: tuple[str, ...],
    base_image: str | None,
    wheelhouse: str | None,
    nocache: bool,
    output: Path | None,
    quiet: bool,
    fmt: str,
) -> None:
    """Build the image of BUILD_DIR, or of NOTEBOOK after building it, on the Docker engine.

    Streams the engine's output, then prints the image id, its size and its tags. Exit 2 when no
    engine answers or the build fails.
    """
    from nb2prod.deploy.image import docker_api

    docker_api()  # fail fast, before any notebook build or wheel download
    build_dir = resolve_build_dir(target, output)
    run_image_build(build_dir, tags, base_image, wheelhouse, nocache, quiet, fmt)


def run_image_build(
    build_dir: Path,
    tags: tuple[str, ...] = (),
    base_image: str | None = None,
    wheelhouse: str | None = None,
    nocache: bool = False,
    quiet: bool = False,
    fmt: str = "text",
) -> None:
    """Build BUILD_DIR's image with progress on stderr and the result on stdout (also `nb2prod build --image`).

    `wheelhouse`: None builds online; "" builds offline from a temporary wheelhouse; a path
    builds offline from that folder, filling it first.
    """
    from nb2prod.deploy.image import build_image

    tags = tags or (default_image_tag(build_dir),)

    progress = BuildProgress(quiet)

    temporary: str | None = None
    if wheelhouse == "":
        temporary = tempfile.mkdtemp(prefix="nb2prod-wheelhouse-")
        wheel_dir: Path | None = Path(temporary)
    else:
        wheel_dir = Path(wheelhouse) if wheelhouse is not None else None
    try:
        result = build_image(
            build_dir,
            tags=tags,
            base_image=base_image,
            wheelhouse=wheel_dir,
            offline=wheel_dir is not None,
            nocache=nocache,
            progress=progress,
        )
    finally:
        progress.close()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        cached = f" ({result.cached_steps}/{len(result.steps)} steps from cache)" if result.steps else ""
        click.echo(f"{result.summary()}{cached}")


STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


class BuildProgress:
    """The image build's steps on stderr: on a terminal one redrawn line (`step 3/9: RUN ...` and the
    elapsed time); otherwise each `Step i/n : ...` line and nb2prod's own lines once, as a log;
    nothing with -q (the command's or nb2prod's)."""

    def __init__(self, quiet: bool = False):
        from nb2prod.progress import StepProgress, terminal
        from nb2prod.progress import quiet as global_quiet

        self.silent = quiet or global_quiet()
        self.steps = StepProgress(sys.stderr) if not self.silent and terminal(sys.stderr) else None

    def __call__(self, text: str) -> None:
        if self.silent:
            return
        for line in text.splitlines():
            step = STEP.match(line.strip())
            if self.steps is not None:
                if step:
                    self.steps(int(step.group(1)), int(step.group(2)), step.group(3))
            elif step or line.startswith("wheelhouse:"):
                click.echo(line, err=True)

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()


@image.command("manifests")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--image", "image_ref", default=None, metavar="IMAGE", help="Image the manifests run; default NAME:VERSION."
)
@click.option(
    "--grid",
    "grid_specs",
    multiple=True,
    metavar="NAME=V1,V2",
    help="Sweep values of a parameter (repeatable; a JSON list also works: NAME=[1,2]). "
    "Without --grid, a `sweep` mapping recorded in the build's config, if any.",
)
@click.option(
    "--schedule", default=None, metavar="CRON", help="Retraining schedule of the CronJob (default '0 3 * * 1')."
)
@click.option("--parallelism", type=click.IntRange(min=1), default=2, show_default=True, help="Sweep pods at once.")
@click.option("--claim", default=None, metavar="NAME", help="PersistentVolumeClaim for the runs (default NAME-runs).")
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write k8s/ and kubeflow/ into (default the build folder).",
)
@FORMAT
def manifests(
    target: Path,
    image_ref: str | None,
    grid_specs: tuple[str, ...],
    schedule: str | None,
    parallelism: int,
    claim: str | None,
    output: Path | None,
    fmt: str,
) -> None:
    """Render Kubernetes Jobs (train, scheduled retrain, Indexed sweep) and a Kubeflow component."""
    from nb2prod.deploy.cluster_manifests import (
        ManifestContext,
        parameters_from_schema,
        parse_grid,
        render_manifest_files,
    )

    build_dir = resolve_build_dir(target, None) if not target.is_dir() else target
    data = read_build_manifest(build_dir)
    if not data:
        raise InputError(f"{build_dir} is not an nb2prod build: it has no readable nb2prod.json.")
    package = data.get("package") or {}
    config = data.get("config") or {}
    parameters = parameters_from_schema(data.get("parameters") or {})
    if grid_specs:
        grid: dict[str, Any] = parse_grid(grid_specs, parameters)
    else:
        grid = config.get("sweep") or {}
        if not isinstance(grid, dict):
            raise InputError(f"{build_dir / 'nb2prod.json'}: the config's `sweep` must map parameter names to lists.")
    ctx = ManifestContext(
        dist_name=str(package.get("name", "")),
        version=str(package.get("version", "")),
        image=image_ref or default_image_tag(build_dir),
        parameters=parameters,
        schedule=schedule or config.get("schedule") or "0 3 * * 1",
        grid=grid,
        parallelism=parallelism,
        runs_claim=claim,
        source_sha256=str((data.get("source") or {}).get("sha256") or ""),
        secret_name=config.get("secret_name"),
    )
    files = render_manifest_files(ctx)
    destination = output or build_dir
    recorded = set(data.get("files") or {})
    if output is None and recorded & set(files):
        raise InputError(f"{build_dir} already has generated manifests; write these elsewhere with -o DIR.")
    for relative, text in files.items():
        path = destination / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if fmt == "json":
        click.echo(json.dumps({"output": str(destination), "files": sorted(files)}, indent=2))
    else:
        for relative in files:
            click.echo(str(destination / relative))
    sys.stdout.flush()
