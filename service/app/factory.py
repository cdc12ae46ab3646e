"""The REST API: an app factory, its lifespan, auth, metrics and thin routes.

Routes are plain ``def``: FastAPI runs them in its thread pool, so model, index and database
work never blocks the event loop. The read routes under ``/users`` are the hot ones: their work
and its JSON encoding run in one thread call (``_answer``).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, FastAPI, Query, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.app.container import IndexBuildFailed, Services, build_services
from service.app.deps import ServicesDep, require_key
from service.app.inspector import inspector_api, install_inspector_pages
from service.app.schemas import (
    ERRORS,
    UNAVAILABLE,
    USER_ERRORS,
    DriftOut,
    ErrorOut,
    EventsIn,
    HistoryOut,
    IngestOut,
    ItemsIn,
    ProfileOut,
    RebuildOut,
    RecommendationsOut,
    UpsertedOut,
    drift_out,
    iso,
    profile_out,
    recommendations_out,
)
from service.core.config import Settings
from service.core.errors import ApiError, envelope, install_error_handlers
from service.embedding.encoder import Embedder
from service.profiling.profiler import UnknownUser
from service.retrieval.builds import IndexUnavailable
from service.summarizers.base import Summarizer

MAX_BODY_BYTES = 16 * 1024 * 1024
HANDLER_THREADS = 4


def create_app(
    settings: Settings | None = None,
    *,
    summarizer: Summarizer | None = None,
    embedder: Embedder | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Route handlers run in this many threads. Their work holds the GIL most of the time,
        # so more threads than this only add switching (anyio's default is 40).
        to_thread.current_default_thread_limiter().total_tokens = HANDLER_THREADS
        services = build_services(settings, summarizer=summarizer, embedder=embedder)
        services.recommender.warm_up()
        app.state.services = services
        # What start-up loaded (the index's ids, the models) lives as long as the app. Left to
        # the garbage collector, each full collection walked it all: 0.46 s with a 100k-item
        # index, the longest stall a request saw under load. Frozen, collections skip it.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        services.close()

    app = FastAPI(
        title="interest-profiler",
        version=__version__,
        description="Readable interest profiles, drift and recommendations from user events.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _install_metrics(app)  # added last: outermost, so it sees 413s and 500s too
    app.include_router(_probes())
    app.include_router(_v1())
    app.include_router(inspector_api())
    install_inspector_pages(app)
    return app


def _one_thread_per_search() -> None:
    """Concurrent requests are the server's parallelism. FAISS would also spread each small
    search over an OpenMP team whose threads spin while they wait: on two cores that burnt
    about 8% of the CPU per request under load and sped nothing up."""
    import faiss

    faiss.omp_set_num_threads(1)


def _probes() -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/health", operation_id="health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", operation_id="ready", responses={503: {"description": "Not ready"}})
    def ready(services: ServicesDep, response: Response) -> dict[str, object]:
        llm_problem = getattr(services.summarizer, "problem", None)
        checks = {
            "store": "ok",
            "embedder": services.embedder.model_id,
            "summarizer": {**services.summarizer.describe(), "problem": llm_problem},
            "index": "ok" if services.index.loaded else services.index.problem,
        }
        ready = services.index.loaded and llm_problem is None
        if not ready:
            response.status_code = 503
        return {"ready": ready, "checks": checks}

    return router


def _v1() -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    @router.put("/items", tags=["catalog"], operation_id="upsert_items", responses=ERRORS)
    def upsert_items(body: ItemsIn, services: ServicesDep) -> UpsertedOut:
        _check_batch(len(body.items), services)
        return UpsertedOut(upserted=services.store.upsert_items(i.to_item() for i in body.items))

    @router.post("/events", tags=["events"], operation_id="add_events", responses=ERRORS)
    def add_events(body: EventsIn, services: ServicesDep) -> IngestOut:
        _check_batch(len(body.events), services)
        result = services.store.add_events([e.to_event() for e in body.events])
        return IngestOut(**result.__dict__)

    @router.get(
        "/users/{user_id}/profile",
        tags=["profiles"],
        operation_id="get_profile",
        response_model=ProfileOut,
        responses=USER_ERRORS,
    )
    async def get_profile(user_id: str, services: ServicesDep, refresh: bool = False) -> Response:
        return await _answer(
            lambda: profile_out(_known(services.profiler.current, user_id, refresh=refresh))
        )

    @router.get(
        "/users/{user_id}/profiles",
        tags=["profiles"],
        operation_id="get_profile_history",
        response_model=HistoryOut,
        responses=USER_ERRORS,
    )
    async def get_history(
        user_id: str,
        services: ServicesDep,
        limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    ) -> Response:
        def history() -> HistoryOut:
            profiles = _known(services.profiler.history, user_id, limit=limit)
            return HistoryOut(user_id=user_id, profiles=[profile_out(p) for p in profiles])

        return await _answer(history)

    @router.get(
        "/users/{user_id}/drift",
        tags=["profiles"],
        operation_id="get_drift",
        response_model=DriftOut,
        responses=USER_ERRORS,
    )
    async def get_drift(user_id: str, services: ServicesDep) -> Response:
        return await _answer(lambda: drift_out(_known(services.profiler.drift, user_id)))

    @router.get(
        "/users/{user_id}/recommendations",
        tags=["recommendations"],
        operation_id="get_recommendations",
        response_model=RecommendationsOut,
        responses={**USER_ERRORS, **UNAVAILABLE},
    )
    async def get_recommendations(
        user_id: str, services: ServicesDep, k: Annotated[int, Query(ge=1, le=1000)] = 10
    ) -> Response:
        def recommendations() -> RecommendationsOut:
            profile, history = _known(services.profiler.current_with_history, user_id)
            try:
                items = services.recommender.recommend(profile, k, history)
            except IndexUnavailable as error:
                raise ApiError(503, "index_unavailable", str(error)) from error
            return recommendations_out(user_id, items)

        return await _answer(recommendations)

    @router.delete(
        "/users/{user_id}",
        tags=["profiles"],
        operation_id="delete_user",
        status_code=204,
        responses=USER_ERRORS,
    )
    def delete_user(user_id: str, services: ServicesDep) -> Response:
        if not services.profiler.delete(user_id):
            raise ApiError(404, "unknown_user", f"no events for user {user_id!r}")
        return Response(status_code=204)

    @router.post(
        "/index/rebuild",
        tags=["index"],
        operation_id="rebuild_index",
        responses={**ERRORS, 409: {"model": ErrorOut, "description": "Empty catalog"}},
    )
    def rebuild_index(services: ServicesDep) -> RebuildOut:
        try:
            manifest = services.index.rebuild(services.store)
        except IndexUnavailable as error:
            raise ApiError(409, "empty_catalog", str(error)) from error
        except IndexBuildFailed as error:
            raise ApiError(500, "index_build_failed", str(error)) from error
        return RebuildOut(**{**manifest.__dict__, "built_at": iso(manifest.built_at)})

    return router


async def _answer(work: Callable[[], BaseModel]) -> Response:
    """``work`` and the JSON encoding of its answer in one handler-thread call. A plain ``def``
    route costs two (FastAPI validates a sync route's return value in the pool again) and
    encodes on the event loop; under load each hand-off is a wait for the GIL."""
    body = await to_thread.run_sync(lambda: _in_handler_thread(work).model_dump_json().encode())
    return Response(body, media_type="application/json")


_handler_thread = threading.local()


def _in_handler_thread(work: Callable[[], BaseModel]) -> BaseModel:
    """``work``, in a handler thread set up for it once. OpenMP's thread count belongs to the
    thread that sets it: the lifespan's setting never reached the handler threads, whose
    FAISS searches each ran on an OpenMP team of two, spinning between searches (with one
    handler thread: 15.5 ms of CPU a request against 7.4 ms once set here, and requests that
    timed out at 200 req/s)."""
    if not getattr(_handler_thread, "ready", False):
        _one_thread_per_search()
        _handler_thread.ready = True
    return work()


def _known(fetch, user_id: str, **options):  # type: ignore[no-untyped-def]
    try:
        return fetch(user_id, **options)
    except UnknownUser:
        raise ApiError(404, "unknown_user", f"no events for user {user_id!r}") from None


def _check_batch(size: int, services: Services) -> None:
    limit = services.settings.max_batch
    if size > limit:
        raise ApiError(413, "batch_too_large", f"{size} records in one batch; the limit is {limit}")


def _install_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()  # per app, so several apps (tests) never collide
    app.add_middleware(Metrics, registry=registry)

    @app.get("/metrics", tags=["probes"], operation_id="metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class Metrics:
    """Request counts and latencies per route template (not per raw path: one series per route,
    whatever the user id). Plain ASGI rather than ``@app.middleware``: that wrapper runs each
    request through an extra task and stream, a third of the cost of a trivial request."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "iprof_requests", "HTTP requests", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "iprof_request_seconds", "HTTP request latency", ["method", "route"], registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # stays so when the handler raises before answering

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.requests.labels(method, route, str(status)).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - started)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, whether or not they declare a length:
    a chunked upload is counted as it arrives."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse()(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                # FastAPI re-raises HTTPException from body reading; the error handler answers.
                raise StarletteHTTPException(413, self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request bodies are limited to {self.limit} bytes"

    def _refuse(self) -> JSONResponse:
        return envelope(413, "payload_too_large", self._message())
