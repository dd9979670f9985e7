"""The HTTP protocol of the server: nb2prod's routes and the Open Inference Protocol (v2).

`create_app(runtime, config)` builds the FastAPI application; nothing is built at import. The
request body is parsed with `json` and checked by the run's input contract (the same
validator batch scoring and drift use); nothing from a request is unpickled or evaluated.
The request model shown in OpenAPI is generated from the contract, so `/docs` lists the real
field names and types.

Routes: POST /predict, POST /explain, GET /healthz, /readyz, /metadata, /metrics, /openapi.json, /docs;
GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready,
POST /v2/models/NAME/infer. Errors: {"error", "field", "rule"} with 400 (malformed JSON),
401 (token), 404, 413 (too large), 422 (contract), 500 (predict or explain failed),
501 (nothing can explain the model: the sentence says how to enable it), 503 (not ready),
504 (timeout); never a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from fastapi import Request

from .metrics import Metrics
from .model import ModelRuntime, PredictError
from .predlog import BackgroundWriter

log = logging.getLogger("nb2prod.serve")
HEALTH_PATHS = frozenset(("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"))
V2_TYPES = {"float": "FP64", "int": "INT64", "bool": "BOOL", "str": "BYTES"}


@dataclass(frozen=True)
class ServeConfig:
    """What a server enforces; the defaults are safe for a loopback server."""

    model_name: str = "model"  # the v2 model name
    token: str | None = None  # bearer token required on all but health routes
    strict_ranges: bool = False
    max_body_bytes: int = 10 * 1024 * 1024
    max_instances: int = 10_000
    timeout_s: float = 30.0
    workers: int = 1


class HTTPProblem(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        field: str | None = None,
        rule: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.field, self.rule = status, error, field, rule
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "field": self.field,
            "rule": self.rule,
            **self.extra,
        }


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Any:
    from starlette.responses import Response

    text = json.dumps(body, separators=(",", ":"), allow_nan=False, default=str)
    return Response(text, status, headers=headers, media_type="application/json")


def _problem(exc: HTTPProblem, headers: dict[str, str] | None = None) -> Any:
    return _json_response(exc.body(), exc.status, headers)


def _finite(value: Any) -> Any:
    """NaN and infinities (not JSON) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def request_models(contract: Any) -> dict[str, Any]:
    """OpenAPI schemas (pydantic models generated from the contract) of the requests."""
    from pydantic import ConfigDict, Field, create_model

    python = {"float": float, "int": int, "bool": bool, "str": str, "datetime": str}
    fields: dict[str, Any] = {}
    if contract is not None:
        for spec in contract.fields:
            kind = python.get(spec.kind, Any)
            extra: dict[str, Any] = {}
            if spec.min is not None and spec.kind in ("int", "float"):
                extra["description"] = (
                    f"{spec.dtype}; training saw {spec.min} to {spec.max}"
                )
            else:
                extra["description"] = spec.dtype
            if spec.categories:
                extra["examples"] = list(spec.categories)
            annotation = Optional[kind] if spec.nullable else kind
            fields[spec.name] = (annotation, Field(..., **extra))
    record = create_model(
        "Record", __config__=ConfigDict(extra="forbid"), **fields  # type: ignore[call-overload]
    )
    request = create_model("PredictRequest", instances=(list[record], ...))  # type: ignore[valid-type]
    examples = [dict(e) for e in getattr(contract, "examples", ())[:2]]
    schema = request.model_json_schema(ref_template="#/components/schemas/{model}")
    if examples:
        schema["example"] = {"instances": examples}
    return {
        "request": schema,
        "components": schema.pop("$defs", {}),
    }


def create_app(
    runtime: ModelRuntime,
    config: ServeConfig = ServeConfig(),
    *,
    metrics: Metrics | None = None,
    writer: BackgroundWriter | None = None,
    routers: Iterable[Any] = (),
    monitors: Iterable[Any] = (),
    title: str = "nb2prod model server",
    version: str = "",
) -> Any:
    """The FastAPI app serving `runtime`'s model. `routers` (FastAPI APIRouters) add routes;
    `writer` receives every prediction (log, observers) off the request path. `monitors` (see
    `main.build_app`) are attached to the runtime and reported under `/metadata`'s
    `monitoring` and `alarms`."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.responses import PlainTextResponse

    metrics = metrics if metrics is not None else Metrics()
    runtime.metrics = metrics
    writer = writer if writer is not None else BackgroundWriter()
    token = config.token.encode() if config.token else None

    @asynccontextmanager
    async def lifespan(app: Any):
        runtime.start()
        try:
            yield
        finally:
            runtime.stop()
            writer.close()
            for pool in explainers:
                pool.shutdown(wait=False, cancel_futures=True)

    monitors = list(monitors)
    for monitor in monitors:
        monitor.attach(runtime)
    app = FastAPI(title=title, version=version or "0", lifespan=lifespan)
    app.state.monitors = monitors
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.writer = writer
    app.state.config = config

    def count(route: str, status: int, started: float, rule: str | None = None) -> None:
        code = str(status)
        metrics.requests.inc((("route", route), ("code", code)))
        metrics.latency.observe(time.perf_counter() - started, (("route", route),))
        if status >= 400:
            metrics.errors.inc((("route", route), ("code", code), ("rule", rule or "")))

    def authorise(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token):
            raise HTTPProblem(401, "a valid bearer token is required", None, "auth")

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > config.max_body_bytes
        ):
            raise HTTPProblem(
                413,
                f"the body has {length} bytes; the limit is {config.max_body_bytes}",
                None,
                "body-size",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > config.max_body_bytes:
                raise HTTPProblem(
                    413,
                    f"the body passes the limit of {config.max_body_bytes} bytes",
                    None,
                    "body-size",
                )
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPProblem(
                400, f"the body is not valid JSON ({exc})", None, "json"
            ) from None

    async def read_instances(request: Request) -> list[Any]:
        """The records of a body {"instances": [record, ...]} (or one record)."""
        body = await read_json(request)
        if not isinstance(body, dict) or "instances" not in body:
            raise HTTPProblem(
                422,
                'the body must be an object {"instances": [record, ...]}',
                "instances",
                "missing",
            )
        unknown = sorted(k for k in body if k != "instances")
        if unknown:
            raise HTTPProblem(
                422,
                f"unknown key {unknown[0]!r} in the body",
                unknown[0],
                "unknown",
            )
        records = body["instances"]
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list):
            raise HTTPProblem(
                422, "instances must be a list of records", "instances", "type"
            )
        return records

    def check_size(n: int) -> None:
        if n > config.max_instances:
            raise HTTPProblem(
                413,
                f"{n} instances in one request; the limit is {config.max_instances}",
                "instances",
                "batch-size",
            )

    def current_model() -> Any:
        loaded = runtime.current
        if loaded is None:
            why = runtime.load_error or "the model is loading"
            raise HTTPProblem(503, f"not ready: {why}", None, "not-ready")
        return loaded

    def check_contract(loaded: Any, records: list[dict[str, Any]]) -> list[str]:
        """Refuse records that break the run's input contract (422); the warning texts."""
        warnings: list[str] = []
        if loaded.contract is not None:
            violations = runtime.source.validate(
                records, loaded.contract, config.strict_ranges
            )
            errors = [v for v in violations if v.severity == "error"]
            if errors:
                first = errors[0]
                raise HTTPProblem(
                    422,
                    f"instance {first.row}: {first.message}",
                    first.field,
                    first.rule,
                    {
                        "row": first.row,
                        "violations": [v.to_dict() for v in errors[:100]],
                    },
                )
            for v in violations:
                metrics.warnings.inc((("field", v.field), ("rule", v.rule)))
                warnings.append(f"instance {v.row}: {v.field}: {v.rule}")
        return warnings

    async def score(records: list[dict[str, Any]]) -> tuple[Any, list[Any], list[str]]:
        """Validate and predict; returns (model, outputs, warning texts)."""
        loaded = current_model()
        warnings = check_contract(loaded, records)
        if not records:
            return loaded, [], warnings
        try:
            used, outputs = await asyncio.wait_for(
                runtime.predict(records), config.timeout_s
            )
        except asyncio.TimeoutError:
            raise HTTPProblem(
                504, f"predict took longer than {config.timeout_s} s", None, "timeout"
            ) from None
        except PredictError as exc:
            raise HTTPProblem(500, str(exc), None, "predict") from None
        return used, outputs, warnings

    def submit(
        request_id: str,
        loaded: Any,
        records: list,
        outputs: list,
        ids: list,
        started: float,
    ) -> None:
        if writer.active:
            ok = writer.submit(
                {
                    "request_id": request_id,
                    "time": datetime.now(timezone.utc).isoformat(
                        timespec="microseconds"
                    ),
                    "run": loaded.run,
                    "alias": loaded.alias,
                    "model_sha256": loaded.model_sha256,
                    "ids": ids,
                    "inputs": records,
                    "outputs": outputs,
                    "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
                }
            )
            del ok  # a full queue is counted by the writer

    def headers_for(request_id: str, warnings: list[str]) -> dict[str, str]:
        headers = {"x-request-id": request_id}
        if warnings:
            text = "; ".join(warnings[:20])
            headers["x-contract-warnings"] = text.encode("ascii", "replace").decode()
        return headers

    schemas = request_models(getattr(runtime.current, "contract", None))

    @app.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": schemas["request"]}},
            }
        },
        summary="Predict one or many records",
    )
    async def predict(request: Request):
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        try:
            authorise(request)
            records = await read_instances(request)
            check_size(len(records))
            loaded, outputs, warnings = await score(records)
        except HTTPProblem as exc:
            count("/predict", exc.status, started, exc.rule)
            return _problem(exc, {"x-request-id": request_id})
        ids = [f"{request_id}-{i}" for i in range(len(outputs))]
        outputs = _finite(outputs)
        answer = {
            "predictions": outputs,
            "ids": ids,
            "request_id": request_id,
            "model": {
                "run": loaded.run,
                "alias": loaded.alias,
                "sha256": loaded.model_sha256,
            },
        }
        submit(request_id, loaded, records, outputs, ids, started)
        metrics.predictions.inc((("run", loaded.run),), len(outputs))
        count("/predict", 200, started)
        return _json_response(answer, 200, headers_for(request_id, warnings))

    explainers: list[Any] = (
        []
    )  # one thread for explanations, apart from the model thread

    def explain_pool() -> Any:
        if not explainers:
            from concurrent.futures import ThreadPoolExecutor

            explainers.append(
                ThreadPoolExecutor(1, thread_name_prefix="nb2prod-explain")
            )
        return explainers[0]

    def call_explain(loaded: Any, records: list[dict[str, Any]]) -> list[Any]:
        try:
            explanations = loaded.explain(records)
        except Exception as exc:
            if type(exc).__name__ == "ExplainUnavailable":
                raise HTTPProblem(501, str(exc), None, "explain-unavailable") from None
            raise HTTPProblem(
                500,
                f"explain of run {loaded.run} failed: {type(exc).__name__}: {exc}",
                None,
                "explain",
            ) from None
        if len(explanations) != len(records):
            raise HTTPProblem(
                500,
                f"explain of run {loaded.run} returned {len(explanations)} explanations for {len(records)} rows",
                None,
                "explain",
            )
        return list(explanations)

    @app.post(
        "/explain",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": schemas["request"]}},
            }
        },
        summary="Explain the predictions of one or many records",
    )
    async def explain(request: Request):
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        try:
            authorise(request)
            records = await read_instances(request)
            check_size(len(records))
            loaded = current_model()
            warnings = check_contract(loaded, records)
            if loaded.explain is None:
                raise HTTPProblem(
                    501,
                    f"run {loaded.run} has no explain module (built before nb2prod "
                    "generated one): rebuild the notebook and train a new run",
                    None,
                    "explain-unavailable",
                )
            explanations: list[Any] = []
            if records:
                future = explain_pool().submit(call_explain, loaded, records)
                try:
                    explanations = await asyncio.wait_for(
                        asyncio.wrap_future(future), config.timeout_s
                    )
                except asyncio.TimeoutError:
                    raise HTTPProblem(
                        504,
                        f"explain took longer than {config.timeout_s} s",
                        None,
                        "timeout",
                    ) from None
        except HTTPProblem as exc:
            count("/explain", exc.status, started, exc.rule)
            return _problem(exc, {"x-request-id": request_id})
        answer = {
            "explanations": _finite(explanations),
            "run": loaded.run,
            "alias": loaded.alias,
            "model_sha256": loaded.model_sha256,
            "request_id": request_id,
        }
        count("/explain", 200, started)
        return _json_response(answer, 200, headers_for(request_id, warnings))

    @app.get("/healthz", summary="The process is alive")
    async def healthz():
        return _json_response({"status": "alive"})

    @app.get("/readyz", summary="A model is loaded, verified and warm")
    async def readyz():
        if runtime.current is None:
            return _json_response(
                {
                    "status": "not ready",
                    "error": runtime.load_error or "the model is loading",
                    "field": None,
                    "rule": "not-ready",
                },
                503,
            )
        return _json_response({"status": "ready", "run": runtime.current.run})

    @app.get("/metadata", summary="The model served, its contract, reloads")
    async def metadata(request: Request):
        try:
            authorise(request)
        except HTTPProblem as exc:
            return _problem(exc)
        status = runtime.status()
        loaded = runtime.current
        status["contract"] = (
            loaded.contract.to_dict() if loaded and loaded.contract else None
        )
        status["strict_ranges"] = config.strict_ranges
        status["limits"] = {
            "max_body_bytes": config.max_body_bytes,
            "max_instances": config.max_instances,
            "timeout_s": config.timeout_s,
        }
        status["workers"] = config.workers
        status["prediction_log"] = {
            "written": writer.written,
            "dropped": writer.dropped,
            "folder": str(writer.log.folder) if writer.log is not None else None,
            "sample": writer.sample,
        }
        status["monitoring"] = {m.name: m.metadata() for m in monitors}
        status["alarms"] = [alarm for m in monitors for alarm in m.alarms()]
        return _json_response(status)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus(request: Request):
        try:
            authorise(request)
        except HTTPProblem as exc:
            return _problem(exc)
        metrics.ready.set((), 1.0 if runtime.current is not None else 0.0)
        text = metrics.render(writer.dropped, writer.written)
        return PlainTextResponse(
            text, media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    # ---- Open Inference Protocol (KServe v2) ----
    name = config.model_name

    @app.get("/v2", summary="v2 server metadata")
    async def v2_server():
        return _json_response(
            {"name": "nb2prod", "version": version or "0", "extensions": []}
        )

    @app.get("/v2/health/live", summary="v2 liveness")
    async def v2_live():
        return _json_response({"live": True})

    @app.get("/v2/health/ready", summary="v2 readiness")
    async def v2_ready():
        ready = runtime.current is not None
        return _json_response({"ready": ready}, 200 if ready else 503)

    def v2_model_name(model_name: str) -> None:
        if model_name != name:
            raise HTTPProblem(
                404,
                f"no model {model_name!r}; this server serves {name!r}",
                None,
                "model",
            )

    @app.get("/v2/models/{model_name}", summary="v2 model metadata")
    async def v2_model(model_name: str, request: Request):
        try:
            authorise(request)
            v2_model_name(model_name)
            loaded = current_model()
        except HTTPProblem as exc:
            return _problem(exc)
        fields = loaded.contract.fields if loaded.contract is not None else ()
        return _json_response(
            {
                "name": name,
                "versions": [loaded.run],
                "platform": "nb2prod",
                "inputs": [
                    {
                        "name": f.name,
                        "datatype": V2_TYPES.get(f.kind, "BYTES"),
                        "shape": [-1],
                    }
                    for f in fields
                ],
                "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]}],
            }
        )

    @app.get("/v2/models/{model_name}/ready", summary="v2 model readiness")
    async def v2_model_ready(model_name: str):
        try:
            v2_model_name(model_name)
        except HTTPProblem as exc:
            return _problem(exc)
        ready = runtime.current is not None
        return _json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def v2_infer(model_name: str, request: Request):
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        route = "/v2/models/infer"
        try:
            authorise(request)
            v2_model_name(model_name)
            body = await read_json(request)
            records = v2_records(body)
            check_size(len(records))
            loaded, outputs, warnings = await score(records)
        except HTTPProblem as exc:
            count(route, exc.status, started, exc.rule)
            return _problem(exc, {"x-request-id": request_id})
        outputs = _finite(outputs)
        ids = [f"{request_id}-{i}" for i in range(len(outputs))]
        submit(request_id, loaded, records, outputs, ids, started)
        metrics.predictions.inc((("run", loaded.run),), len(outputs))
        count(route, 200, started)
        answer = {
            "model_name": name,
            "model_version": loaded.run,
            "id": str(body.get("id") or request_id),
            "outputs": [v2_output("predict", outputs)],
            "parameters": {"ids": ids, "request_id": request_id},
        }
        return _json_response(answer, 200, headers_for(request_id, warnings))

    app.post("/v2/models/{model_name}/infer", summary="v2 inference")(v2_infer)

    @app.post(
        "/v2/models/{model_name}/versions/{model_version}/infer",
        summary="v2 inference (the version is the run being served)",
    )
    async def v2_infer_version(model_name: str, model_version: str, request: Request):
        return await v2_infer(model_name, request)

    for router in routers:
        app.include_router(router)

    # ---- errors: one JSON shape, never a traceback ----
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        rule = "not-found" if exc.status_code == 404 else "http"
        return _json_response(
            {"error": str(exc.detail), "field": None, "rule": rule}, exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = (exc.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or None
        return _json_response(
            {
                "error": str(first.get("msg", "invalid request")),
                "field": where,
                "rule": "type",
            },
            422,
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.error(
            "%s %s failed: %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
            exc,
        )
        return _json_response(
            {
                "error": f"internal error ({type(exc).__name__})",
                "field": None,
                "rule": "internal",
            },
            500,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            current = request_models(getattr(runtime.current, "contract", None))
            app.routes  # noqa: B018 - routes are final here
            schema = get_openapi(
                title=app.title, version=app.version, routes=app.routes
            )
            predict_op = schema["paths"]["/predict"]["post"]
            predict_op["requestBody"]["content"]["application/json"]["schema"] = (
                current["request"]
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                current["components"]
            )
            if runtime.current is None:
                return (
                    schema  # not cached: the contract is known once the model is loaded
                )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    runtime.on_swap = lambda: setattr(app, "openapi_schema", None)
    return app


def v2_records(body: Any) -> list[dict[str, Any]]:
    """Records from a v2 inference request: one input tensor per field, one row per element."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise HTTPProblem(
            422, 'a v2 request needs "inputs": [tensor, ...]', "inputs", "missing"
        )
    columns: dict[str, list[Any]] = {}
    length = None
    for tensor in body["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise HTTPProblem(422, "each v2 input needs a name", "inputs", "type")
        tensor_name = tensor["name"]
        data = tensor.get("data")
        if not isinstance(data, list):
            raise HTTPProblem(
                422, f"input {tensor_name!r} needs a data list", tensor_name, "type"
            )
        flat = _flatten(data)
        shape = tensor.get("shape")
        if isinstance(shape, list) and shape and all(isinstance(s, int) for s in shape):
            if math.prod(shape) != len(flat) or any(s > 1 for s in shape[1:]):
                raise HTTPProblem(
                    422,
                    f"input {tensor_name!r}: shape {shape} does not fit {len(flat)} values of one field",
                    tensor_name,
                    "type",
                )
        if tensor.get("datatype") == "BYTES":
            flat = [v.decode() if isinstance(v, bytes) else v for v in flat]
        if length is not None and len(flat) != length:
            raise HTTPProblem(
                422,
                f"input {tensor_name!r} has {len(flat)} values, the others {length}",
                tensor_name,
                "type",
            )
        length = len(flat)
        columns[tensor_name] = flat
    if not columns:
        return []
    names = list(columns)
    return [{n: columns[n][i] for n in names} for i in range(length or 0)]


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


def v2_output(output_name: str, values: list[Any]) -> dict[str, Any]:
    if values and all(isinstance(v, list) for v in values):
        width = len(values[0])
        flat = [x for v in values for x in v]
        shape = [len(values), width]
    else:
        flat, shape = list(values), [len(values)]
    kinds = {type(v) for v in flat}
    if kinds <= {bool}:
        datatype = "BOOL"
    elif kinds <= {int}:
        datatype = "INT64"
    elif kinds <= {int, float, type(None)}:
        datatype = "FP64"
    else:
        datatype = "BYTES"
    return {"name": output_name, "shape": shape, "datatype": datatype, "data": flat}
