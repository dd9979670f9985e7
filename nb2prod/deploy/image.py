"""Container images: render the image spec of a build and build it on a Docker engine.

`render_image_files(ctx)` is pure: it turns an `ImageContext` into the files of the image spec
(`Dockerfile`, `.dockerignore`, `docker/entrypoint.py`, ...), relative path -> text. Every value
that comes from a notebook or its config is validated when the context is made and quoted where it
is written, so nothing a notebook says can add a Dockerfile instruction.

`build_image(...)` builds a build folder through the Docker SDK's low-level API (the classic
builder that dockerd runs without BuildKit), streaming the engine's output as progress, and
optionally offline from a wheelhouse made on the host.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from nb2prod import __version__, escape
from nb2prod.errors import InputError, Nb2prodError

# ---------------------------------------------------------------------------------------------
# Validation of notebook-derived values
# ---------------------------------------------------------------------------------------------

_DIST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
_PYTHON_VERSION = re.compile(r"3\.[0-9]{1,2}\Z")
# PEP 440, public and local parts (the grammar, not only the normal form).
_VERSION = re.compile(
    r"v?(?:[0-9]+!)?[0-9]+(?:\.[0-9]+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?(?:[-_.]?dev[-_.]?[0-9]*)?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\Z",
    re.IGNORECASE,
)
# A Docker image reference: [registry[:port]/]path[:tag][@digest], path components lower-case.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)"
_IMAGE_REF = re.compile(
    rf"{_REGISTRY}?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?\Z"
)
_LABEL_KEY = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?\Z")
_HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~/-]*\Z")
_ENTRY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*\Z")
_LABEL_VALUE_MAX = 4096


def _check(pattern: re.Pattern[str], value: object, what: str, example: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InputError(f"{what} {value!r} is not valid (expected something like {example!r}).")
    return value


def check_dist_name(value: object) -> str:
    """A distribution name as PEP 508 allows it (letters, digits, `.`, `_`, `-`)."""
    return _check(_DIST_NAME, value, "the distribution name", "fraud-detection")


def check_package(value: object) -> str:
    """A Python package name: an ASCII identifier that is not a keyword."""
    import keyword

    if not isinstance(value, str) or not value.isascii() or not value.isidentifier() or keyword.iskeyword(value):
        raise InputError(f"the package name {value!r} is not a valid Python identifier.")
    return value


def check_version(value: object) -> str:
    """A PEP 440 version."""
    return _check(_VERSION, value, "the version", "0.1.0")


def check_python_version(value: object) -> str:
    """A Python minor version, `3.X`."""
    return _check(_PYTHON_VERSION, value, "the Python version", "3.11")


def check_image_ref(value: object, what: str = "the image reference") -> str:
    """A Docker image reference such as `python:3.11-slim` or `registry:5000/team/app:1.0`."""
    if isinstance(value, str) and len(value) > 255:
        raise InputError(f"{what} is longer than 255 characters.")
    return _check(_IMAGE_REF, value, what, "python:3.11-slim")


def check_label(key: object, value: object) -> tuple[str, str]:
    """An OCI label: a reverse-DNS key and a printable one-line value without backslashes.

    (A backslash could be escaped for the engine, but hadolint's parser misreads an escaped
    backslash before a closing quote, and the generated Dockerfile must lint clean.)
    """
    _check(_LABEL_KEY, key, "the label key", "org.example.team")
    if not isinstance(value, str):
        raise InputError(f"the value of label {key!r} must be a string, not {type(value).__name__}.")
    if len(value) > _LABEL_VALUE_MAX or any(not (ch == " " or ch.isprintable()) for ch in value):
        raise InputError(
            f"the value of label {key!r} must be one printable line of at most {_LABEL_VALUE_MAX} characters."
        )
    if "\\" in value:
        raise InputError(f"the value of label {key!r} contains a backslash, which labels do not accept.")
    return key, value  # type: ignore[return-value]


def check_entry(value: object, what: str) -> str:
    """A `module.path:function` entry point."""
    return _check(_ENTRY, value, what, "package.serve:main")


def docker_quote(value: str) -> str:
    """`value` as a double-quoted Dockerfile word (nb2prod.escape.dockerfile_word), or InputError."""
    try:
        return escape.dockerfile_word(value)
    except escape.EscapeError as exc:
        raise InputError(f"{exc}.") from None


def default_base_image(python_version: str) -> str:
    """The official Python image of that version, slim variant."""
    return f"python:{check_python_version(python_version)}-slim"


def default_tag(dist_name: str, version: str) -> str:
    """`NAME:VERSION`, with the characters a tag can't hold (a local version's `+`) made `-`."""
    repo = re.sub(r"[^a-z0-9._-]", "-", dist_name.lower()).strip("._-") or "model"
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:128]
    return f"{repo}:{tag}"


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

RUNTIME_UID = 10001


@dataclass(frozen=True)
class ImageContext:
    """What the image spec of one build needs; validated on creation.

    `entry_points` maps a container command (`train`, `predict`, `serve`) to the
    `module:function` called with the remaining arguments; by default `train` and `predict` call
    `PACKAGE.train:main` and `PACKAGE.predict:main`. A `serve` entry adds a HEALTHCHECK on
    `health_path` and exposes `serve_port`.
    """

    dist_name: str
    package: str
    version: str
    python_version: str = "3.11"
    base_image: str | None = None  # None: the official python:X.Y-slim
    source_sha256: str = ""
    notebook: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    has_predict: bool = True
    serve_entry: str | None = None
    serve_port: int = 8080
    health_path: str = "/health"

    def __post_init__(self) -> None:
        check_dist_name(self.dist_name)
        check_package(self.package)
        check_version(self.version)
        check_python_version(self.python_version)
        if self.base_image is not None:
            check_image_ref(self.base_image, "the base image")
        if self.source_sha256 and not re.fullmatch(r"[0-9a-f]{64}", self.source_sha256):
            raise InputError(f"the source hash {self.source_sha256!r} is not a sha256 hex digest.")
        if self.notebook:
            check_label("io.nb2prod.source.notebook", self.notebook_label)
        for key, value in self.labels.items():
            check_label(key, value)
        if self.serve_entry is not None:
            check_entry(self.serve_entry, "the serve entry point")
        if (
            isinstance(self.serve_port, bool)
            or not isinstance(self.serve_port, int)
            or not 1 <= self.serve_port <= 65535
        ):
            raise InputError(f"the serve port {self.serve_port!r} is not a port number (1-65535).")
        _check(_HEALTH_PATH, self.health_path, "the health check path", "/health")

    @property
    def notebook_label(self) -> str:
        """The notebook's file name as a label value: `%`, a backslash (rare in names) and any
        character that is not printable (a line break) percent-encoded, e.g. `%5C`."""
        return escape.percent_encode_unprintable(self.notebook)

    @property
    def effective_base_image(self) -> str:
        return self.base_image or default_base_image(self.python_version)

    @property
    def entry_points(self) -> dict[str, str]:
        entries = {"train": f"{self.package}.train:main"}
        if self.has_predict:
            entries["predict"] = f"{self.package}.predict:main"
        if self.serve_entry:
            entries["serve"] = self.serve_entry
        return entries

    def all_labels(self) -> list[tuple[str, str]]:
        """(key, Dockerfile-ready value) pairs: static values quoted, build arguments expanded."""
        static = {
            "org.opencontainers.image.title": self.dist_name,
            "org.opencontainers.image.version": self.version,
            "io.nb2prod.version": __version__,
        }
        if self.source_sha256:
            static["io.nb2prod.source.sha256"] = self.source_sha256
        if self.notebook:
            static["io.nb2prod.source.notebook"] = self.notebook_label
        for key, value in self.labels.items():
            static.setdefault(key, value)
        pairs = [(key, docker_quote(value)) for key, value in sorted(static.items())]
        # Filled at build time (`nb2prod image build` passes the git revision), quoted for spaces.
        pairs.append(("org.opencontainers.image.revision", '"${GIT_REVISION}"'))
        pairs.append(("org.opencontainers.image.base.name", '"${BASE_IMAGE}"'))
        return pairs


def _environment() -> Any:
    from nb2prod.resources import jinja_environment

    return jinja_environment()


def render_image_files(ctx: ImageContext) -> dict[str, str]:
    """The image spec of one build: relative path -> file text (deterministic)."""
    env = _environment()
    serve = ctx.serve_entry is not None
    common = {
        "nb2prod_version": __version__,
        "dist_name": ctx.dist_name,
        "version": ctx.version,
        "python_version": ctx.python_version,
        "serve": serve,
        "serve_port": ctx.serve_port,
        "health_path": ctx.health_path,
    }
    python = "/opt/venv/bin/python"
    dockerfile = env.get_template("image/Dockerfile.j2").render(
        **common,
        base_image=ctx.effective_base_image,
        uid=RUNTIME_UID,
        labels=ctx.all_labels(),
        import_check=docker_quote(f"import {ctx.package}"),
        entrypoint=json.dumps([python, "/opt/app/entrypoint.py"]),
        healthcheck_cmd=json.dumps([python, "/opt/app/healthcheck.py"]),
    )
    commands = (
        "{\n" + "".join(f"    {escape.py_str(k)}: {escape.py_str(v)},\n" for k, v in ctx.entry_points.items()) + "}"
    )
    files = {
        "Dockerfile": dockerfile,
        ".dockerignore": env.get_template("image/dockerignore.j2").render(**common),
        "docker/entrypoint.py": env.get_template("image/entrypoint.py.j2").render(**common, commands=commands),
        "wheelhouse/README.md": env.get_template("image/wheelhouse-README.md.j2").render(**common),
    }
    if serve:
        files["docker/healthcheck.py"] = env.get_template("image/healthcheck.py.j2").render(**common)
    return files


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


class EngineUnavailable(Nb2prodError):
    """No Docker engine answered."""


class ImageBuildError(Nb2prodError):
    """The engine refused or failed the build."""


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile instruction as the classic builder reported it."""

    number: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class ImageBuildResult:
    image_id: str
    tags: tuple[str, ...]
    size: int  # bytes, as the engine reports it
    steps: tuple[BuildStep, ...]
    offline: bool
    log: str

    @property
    def cached_steps(self) -> int:
        return sum(step.cached for step in self.steps)

    def summary(self) -> str:
        return f"image {self.image_id} {self.size / 1e6:.1f} MB {' '.join(self.tags)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "tags": list(self.tags),
            "size": self.size,
            "offline": self.offline,
            "steps": [{"number": s.number, "instruction": s.instruction, "cached": s.cached} for s in self.steps],
        }


def docker_api(timeout: int = 600) -> Any:
    """A low-level Docker API client that answered a ping, or `EngineUnavailable`."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.APIClient(base_url=host, version="auto", timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        raise EngineUnavailable(
            f"no Docker engine answers at {host} ({_engine_reason(exc)}); start dockerd or set DOCKER_HOST."
        ) from exc
    return client


def _engine_reason(exc: BaseException) -> str:
    """Why the engine did not answer, in a few words (the transport's errors nest deeply)."""
    text = str(exc)
    for needle, reason in (
        ("No such file or directory", "no socket there"),
        ("Connection refused", "connection refused"),
        ("NewConnectionError", "connection refused"),
        ("Permission denied", "permission denied"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return reason
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def git_revision(path: Path) -> str:
    """The commit of the git checkout holding `path` (with `-dirty` when it has changes), or `unknown`."""
    try:
        head = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _dockerignore_patterns(build_dir: Path) -> list[str]:
    path = build_dir / ".dockerignore"
    if not path.is_file():
        return []
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _tar_add_file(tar: tarfile.TarFile, source: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(source), arcname=arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isfile():
        with source.open("rb") as handle:
            tar.addfile(info, handle)
    else:
        tar.addfile(info)


def make_context(build_dir: Path, wheelhouse: Path | None = None) -> IO[bytes]:
    """The build context as a tar file: the build folder less `.dockerignore`, plus the wheelhouse.

    Files are added in sorted order with root ownership, so the same folder gives the same tar.
    """
    from docker.utils.build import exclude_paths

    build_dir = build_dir.resolve()
    own_wheelhouse = (build_dir / "wheelhouse").resolve()
    extra = wheelhouse.resolve() if wheelhouse is not None and wheelhouse.resolve() != own_wheelhouse else None
    included = sorted(exclude_paths(str(build_dir), _dockerignore_patterns(build_dir), dockerfile="Dockerfile"))
    handle: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)  # noqa: SIM115
    with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in included:
            rel_posix = rel.replace(os.sep, "/")
            if extra is not None and rel_posix.startswith("wheelhouse/") and rel_posix.endswith(".whl"):
                continue  # an explicit wheelhouse replaces the folder's own wheels
            source = build_dir / rel
            if source.is_symlink() or source.is_file() or source.is_dir():
                _tar_add_file(tar, source, rel_posix)
        if extra is not None:
            for wheel in sorted(extra.glob("*.whl")):
                _tar_add_file(tar, wheel, f"wheelhouse/{wheel.name}")
    handle.seek(0)
    return handle


def _build_requirements(build_dir: Path) -> list[str]:
    import tomllib

    pyproject = build_dir / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{pyproject}: cannot read the build requirements ({exc}).") from exc
    requires = data.get("build-system", {}).get("requires", ["setuptools>=40.8.0", "wheel"])
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise InputError(f"{pyproject}: [build-system] requires must be a list of strings.")
    return requires


def fill_wheelhouse(build_dir: Path, wheelhouse: Path, python_version: str, progress: Callable[[str], None]) -> int:
    """Put wheels for requirements.lock and the package's build backend into `wheelhouse`.

    With the host's Python at the image's version, `pip wheel` builds whatever has no wheel;
    otherwise `pip download` fetches binary wheels for that version and this machine's
    architecture. Returns the number of wheels in the wheelhouse.

    A wheelhouse already filled for the same lock file, build requirements and Python version
    (recorded in `.nb2prod-filled`) is used as it is, without asking pip again.
    """
    import hashlib

    lock = build_dir / "requirements.lock"
    if not lock.is_file():
        raise InputError(f"{build_dir}: requirements.lock is missing, so there is nothing to make a wheelhouse from.")
    wheelhouse.mkdir(parents=True, exist_ok=True)
    host = f"{sys.version_info.major}.{sys.version_info.minor}"
    build_requires = _build_requirements(build_dir)
    key = hashlib.sha256(
        json.dumps([lock.read_text(encoding="utf-8"), build_requires, python_version, platform.machine()]).encode()
    ).hexdigest()
    marker = wheelhouse / ".nb2prod-filled"
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == key:
        progress(f"wheelhouse: {wheelhouse} already holds the wheels of this lock file\n")
        return len(list(wheelhouse.glob("*.whl")))
    reqs = ["--requirement", str(lock), *build_requires]
    if host == python_version:
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheelhouse), *reqs]
    else:
        machine = platform.machine() or "x86_64"
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
            "--only-binary=:all:", "--implementation", "cp", "--python-version", python_version,
            "--platform", f"manylinux_2_36_{machine}", *reqs,
        ]  # fmt: skip
    progress(f"wheelhouse: {' '.join(cmd[1:4])} into {wheelhouse}\n")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["pip failed"]
        raise InputError(f"could not make the wheelhouse {wheelhouse} ({tail[0]}).")
    marker.write_text(key + "\n", encoding="utf-8")
    return len(list(wheelhouse.glob("*.whl")))


_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")


def _parse_steps(log: str) -> tuple[BuildStep, ...]:
    steps: list[BuildStep] = []
    current: tuple[int, str] | None = None
    cached = False
    for line in log.splitlines():
        match = _STEP.match(line)
        if match:
            if current is not None:
                steps.append(BuildStep(current[0], current[1], cached))
            current, cached = (int(match.group(1)), match.group(3)), False
        elif current is not None and line.strip() == "---> Using cache":
            cached = True
    if current is not None:
        steps.append(BuildStep(current[0], current[1], cached))
    return tuple(steps)


def _read_python_version(build_dir: Path) -> str:
    """The image's Python version: the `python` the build manifest records, else this Python's."""
    manifest = build_dir / "nb2prod.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        for holder in (data, data.get("config", {}) if isinstance(data, dict) else {}):
            value = holder.get("python") if isinstance(holder, dict) else None
            if isinstance(value, str) and _PYTHON_VERSION.match(value):
                return value
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def build_image(
    build_dir: Path,
    *,
    tags: tuple[str, ...] = (),
    base_image: str | None = None,
    wheelhouse: Path | None = None,
    offline: bool = False,
    nocache: bool = False,
    progress: Callable[[str], None] = lambda text: None,
) -> ImageBuildResult:
    """Build the image of a build folder (one that holds a Dockerfile) and tag it.

    `offline=True` first fills `wheelhouse` (default `BUILD_DIR/wheelhouse`) on the host, then
    builds with no network at all (every pip call installs from the wheelhouse). `progress`
    receives the engine's output as it streams.
    """
    build_dir = Path(build_dir)
    if not (build_dir / "Dockerfile").is_file():
        raise InputError(f"{build_dir}: no Dockerfile here; pass a build folder made by `nb2prod build`.")
    for tag in tags:
        check_image_ref(tag, "the tag")
    if base_image is not None:
        check_image_ref(base_image, "the base image")
    client = docker_api()
    if offline:
        wheelhouse = wheelhouse or build_dir / "wheelhouse"
        count = fill_wheelhouse(build_dir, wheelhouse, _read_python_version(build_dir), progress)
        progress(f"wheelhouse: {count} wheels in {wheelhouse}\n")
    buildargs = {"GIT_REVISION": git_revision(build_dir)}
    if base_image:
        buildargs["BASE_IMAGE"] = base_image
    context = make_context(build_dir, wheelhouse)
    log_parts: list[str] = []
    image_id: str | None = None
    try:
        stream = client.build(
            fileobj=context,
            custom_context=True,
            tag=tags[0] if tags else None,
            buildargs=buildargs,
            decode=True,
            rm=True,
            forcerm=True,
            nocache=nocache,
            pull=False,
            # Offline means offline: the build's containers get no network at all.
            network_mode="none" if offline else None,
        )
        for chunk in stream:
            if "stream" in chunk:
                text = chunk["stream"]
                log_parts.append(text)
                progress(text)
            elif "status" in chunk:
                progress(f"{chunk['status']} {chunk.get('progress', '')}".rstrip() + "\n")
            if "error" in chunk:
                detail = str(chunk.get("error", "")).strip().splitlines()[-1:] or ["unknown error"]
                raise ImageBuildError(f"the image build of {build_dir} failed: {detail[0]}{_last_output(log_parts)}")
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("ID"):
                image_id = aux["ID"]
    except ImageBuildError:
        raise
    except Exception as exc:
        from docker.errors import DockerException

        if isinstance(exc, DockerException):
            raise ImageBuildError(f"the image build of {build_dir} failed: {_short(exc)}") from exc
        raise
    finally:
        context.close()
    log = "".join(log_parts)
    if image_id is None:
        found = re.findall(r"Successfully built ([0-9a-f]{12,64})", log)
        if not found:
            raise ImageBuildError(f"the image build of {build_dir} ended without an image id.")
        image_id = found[-1]
    for tag in tags[1:]:
        repo, _, name = _split_tag(tag)
        client.tag(image_id, repo, name or None)
    info = client.inspect_image(image_id)
    return ImageBuildResult(
        image_id=info["Id"],
        tags=tuple(sorted(info.get("RepoTags") or [])),
        size=int(info.get("Size", 0)),
        steps=_parse_steps(log),
        offline=offline,
        log=log,
    )


def _last_output(log_parts: list[str]) -> str:
    """`; last output: LINE` with the build's last line of its own output (the error's cause), if any."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", "".join(log_parts)).splitlines()  # the engine colours stderr
    for line in reversed(lines):
        text = line.strip()
        if text and not text.startswith(("--->", "Step ", "Removing intermediate", "Running in")):
            return f"; last output: {text[:200]}"
    return ""


def _split_tag(ref: str) -> tuple[str, str, str]:
    """`repo[:tag]` -> (repo, ':', tag); a registry port is not a tag."""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ":", ref[colon + 1 :]
    return ref, "", ""
