"""`create_app(settings)`: the /api/v1 service as a FastAPI app (OpenAPI at /docs).

The factory builds every component for one app instance (no module-level singletons), so tests
can create as many apps as they like. TorchServe is started by `shim.serve` and handed in as
`TorchServeEndpoints`; without it the app still serves uploads, jobs and versions, and classify
answers 503. Every error, FastAPI's own 404/405/422 included, has one JSON shape:
`{"error": {"code", "message", "details"}}`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp
from swagger_ui_bundle import swagger_ui_path

from shim.api.deps import Services
from shim.api.desk_poller import build_pollers
from shim.api.guard import RequestGuard
from shim.api.replica_watch import watch_replicas
from shim.api.request_id import RequestIdMiddleware
from shim.api.routes import (
    classify,
    classify_jobs,
    connectors,
    feedback,
    imports,
    models,
    monitoring,
    ops,
    retrain,
    similar,
    train,
    train_data,
    znuny,
)
from shim.desks.helpdesks import build_connectors, label_map
from shim.desks.history_import import HistoryImports
from shim.desks.outbox import Outbox
from shim.errors import ApiError
from shim.jobs.classify_jobs import ClassifyJobs
from shim.jobs.retrain import RetrainPolicy
from shim.jobs.runner import JobRunner
from shim.metrics import ApiMetrics
from shim.quality.drift import DriftWatch
from shim.quality.monitoring import Monitoring
from shim.serving.classifier import Classifier
from shim.serving.supervisor import Supervisor
from shim.serving.torchserve_client import (
    AsyncTorchServeClient,
    KeyFile,
    TorchServeClient,
    TorchServeError,
)
from shim.serving.versions import ModelVersions
from shim.settings import Settings
from shim.store.feedback import Feedback
from shim.store.predictions import PredictionLog
from shim.store.registry import Store

logger = logging.getLogger(__name__)

# A file or folder in a shared directory that no record names, after this long, was left by a
# crash: an upload or a publication on any replica finishes sooner.
SHARED_ORPHAN_AGE_S = 3600

API_PREFIX = "/api/v1"
DOCS_STATIC = "/docs/static"
DESCRIPTION = """Upload labelled help-desk tickets, train a classifier in the background, and
classify new tickets by queue and priority. Every /api/v1 route takes `Authorization: Bearer
<key>` when the service has an API key."""


class _App(FastAPI):
    """FastAPI with the request id outside even Starlette's ServerErrorMiddleware, so that a 500
    and the log lines about it carry the id too."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


@dataclass(frozen=True)
class TorchServeEndpoints:
    """Where the running TorchServe answers (both on loopback), and its keys."""

    inference_url: str
    management_url: str
    keys: KeyFile | None = None


def create_app(
    settings: Settings,
    torchserve: TorchServeEndpoints | None = None,
    supervisor: Supervisor | None = None,
) -> FastAPI:
    """Build one service instance on `settings.data_dir`, talking to `torchserve` if given.

    With a `supervisor`, a restarted TorchServe gets its model versions back, and the health
    routes report the restart.
    """
    services = build_services(settings, torchserve)
    services.supervisor = supervisor
    if supervisor is not None:
        supervisor.after_restart.append(services.versions.restore)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        recovered = services.runner.recover()
        for job in recovered:
            logger.warning("job %s was unfinished at start: marked failed (interrupted)", job.id)
        # Another replica may be writing into a shared directory: only what is long untouched.
        shared = (
            services.settings.database_url is not None or services.settings.shared_dir is not None
        )
        services.store.remove_orphans(min_age_s=SHARED_ORPHAN_AGE_S if shared else 0)
        # Loading the model takes seconds: answer /healthz meanwhile, /readyz says when it is done.
        threading.Thread(
            target=services.versions.load_at_start, name="load-default", daemon=True
        ).start()
        services.outbox.start()  # write-backs left pending by the last run go out first
        services.imports.resume()  # after remove_orphans: a page's file is only kept committed
        pollers = [asyncio.create_task(poller.run()) for poller in build_pollers(services)]
        pollers.append(asyncio.create_task(watch_replicas(services)))
        pollers.append(asyncio.create_task(services.classify_jobs.run()))  # resumes any
        try:
            yield
        finally:
            for task in pollers:
                task.cancel()
            await asyncio.gather(*pollers, return_exceptions=True)
            services.imports.stop()
            services.outbox.stop()
            services.runner.shutdown()
            if services.classifier.client is not None:
                await services.classifier.client.aclose()
            if services.versions.client is not None:
                services.versions.client.close()
            services.store.close()  # its connections, explicitly: the exit does not collect them

    app = _App(
        title="ticketserve",
        version="1.0",
        summary="Support-ticket classifier: upload, train, classify, model versions",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local files: FastAPI's loads them from a CDN
        redoc_url=None,
    )
    add_docs(app)
    add_console(app)
    app.state.services = services
    app.middleware("http")(services.metrics.middleware)
    # Added last, so it runs first: no key, no body.
    app.add_middleware(
        RequestGuard,
        api_key=services.api_key,
        max_body_bytes=settings.max_request_bytes,
        upload_paths=(f"{API_PREFIX}/train-data", f"{API_PREFIX}/classify-jobs"),
        max_upload_bytes=settings.max_upload_bytes,
        protected_prefix=API_PREFIX,
        signed_paths=(
            API_PREFIX + connectors.ZAMMAD_WEBHOOK_PATH,
            API_PREFIX + znuny.INVOKE_PATH,  # its own secret guards it
        ),
    )
    add_error_handlers(app)

    api = APIRouter(prefix=API_PREFIX)
    for module in (
        train_data, train, retrain, classify, classify_jobs, similar, feedback, monitoring, models,
        connectors,
    ):  # fmt: skip
        api.include_router(module.router)
    api.include_router(znuny.router)
    api.include_router(imports.router)
    app.include_router(api)
    app.include_router(ops.router)
    return app


def add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle package: no internet needed."""
    app.mount(DOCS_STATIC, StaticFiles(directory=str(swagger_ui_path)), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png",
        )


# The web console's files, shipped in the package (no CDN, no build step); it uses only the
# public /api/v1 routes, with the key the admin enters.
CONSOLE_FILES = resources.files("shim") / "console"
CONSOLE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def add_console(app: FastAPI) -> None:
    """The console at `/`, its scripts and styles under /console/."""
    app.mount("/console", StaticFiles(packages=[("shim", "console")]), name="console")
    page = (CONSOLE_FILES / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    def console() -> HTMLResponse:
        return HTMLResponse(
            page,
            headers={
                "Content-Security-Policy": CONSOLE_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )


def build_services(settings: Settings, torchserve: TorchServeEndpoints | None) -> Services:
    """Store, runner, versions, classifier, feedback, monitoring and the retraining policy of
    one app instance, wired: answers feed the drift watch, drift and corrections the policy."""
    store = Store(settings.data_dir, settings.database_url, settings.shared_dir)
    sync_client = async_client = None
    if torchserve is not None:
        timeout = settings.torchserve_timeout_s
        urls = (torchserve.inference_url, torchserve.management_url)
        sync_client = TorchServeClient(*urls, timeout=timeout, keys=torchserve.keys)
        async_client = AsyncTorchServeClient(*urls, timeout=timeout, keys=torchserve.keys)
    metrics = ApiMetrics()
    versions = ModelVersions(store, settings, sync_client, settings.max_loaded_versions)
    runner = JobRunner(store, settings, versions.publish)
    retrain = RetrainPolicy(settings, store, runner)
    drift = DriftWatch(settings, store, metrics)
    drift.listeners.append(retrain.on_drift)
    predictions = PredictionLog(settings, store)
    predictions.listeners.append(drift.observe)
    corrections = Feedback(settings, store, predictions, metrics)
    corrections.listeners.append(retrain.after_feedback)
    connectors = build_connectors(settings)
    desks = {name: connector.desk for name, connector in connectors.items()}
    labels = label_map(settings)
    outbox = Outbox(store, settings, desks, labels, metrics)
    classifier = Classifier(settings, store, versions, async_client, metrics, predictions)
    return Services(
        settings=settings,
        api_key=settings.resolved_api_key(),
        store=store,
        runner=runner,
        versions=versions,
        classifier=classifier,
        feedback=corrections,
        monitoring=Monitoring(settings, store, metrics, drift),
        retrain=retrain,
        metrics=metrics,
        connectors=connectors,
        outbox=outbox,
        imports=HistoryImports(store, settings, desks, labels, runner.replica),
        classify_jobs=ClassifyJobs(store, settings, classifier, runner.replica),
    )


def add_error_handlers(app: FastAPI) -> None:
    """Map every failure to the one error shape, once."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        if any(p["type"] == "json_invalid" for p in problems):
            error = ApiError("the request body is not valid JSON", problems, code="invalid_json")
            return JSONResponse(error.body(), status_code=400)
        first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        error = ApiError(message, jsonable_encoder(problems), code="validation_error")
        return JSONResponse(error.body(), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        error = ApiError(message, code=code)
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(TorchServeError)
    async def torchserve_error(request: Request, exc: TorchServeError) -> JSONResponse:
        status = 503 if exc.status in (503, 507) else 502
        error = ApiError(f"TorchServe: {exc.message}", code="torchserve_error")
        headers = {"Retry-After": str(app.state.services.settings.retry_after_s)}
        return JSONResponse(error.body(), status_code=status, headers=headers)

    @app.exception_handler(httpx.TransportError)
    async def torchserve_down(request: Request, exc: httpx.TransportError) -> JSONResponse:
        error = ApiError("TorchServe does not answer; try again shortly", code="torchserve_down")
        headers = {"Retry-After": str(app.state.services.settings.retry_after_s)}
        return JSONResponse(error.body(), status_code=503, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        error = ApiError("internal error; see the service log", code="internal_error")
        return JSONResponse(error.body(), status_code=500)
