"""ASGI middleware: request metrics per route template, and the request body's checks (size
limit, UTF-8)."""

from __future__ import annotations

import codecs
import time
from collections.abc import Iterator

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.app.errors import BodyError, envelope

MAX_BODY_BYTES = 16 * 1024 * 1024


def install_metrics(app: FastAPI) -> None:
    registry = CollectorRegistry()  # per app, so several apps (tests) never collide
    app.add_middleware(Metrics, registry=registry)
    registry.register(FallbackChecks(app))
    registry.register(StoreAndIndex(app))

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


class FallbackChecks(Collector):
    """``iprof_llm_fallbacks_total{check}``: the windows this instance profiled from the
    fallback because the LLM's answer failed a check (``llm.sense``, ``llm.validation``), read
    from the profiler at each scrape."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "iprof_llm_fallbacks",
            "LLM answers rejected, by the check they failed",
            labels=["check"],
        )
        services = getattr(self.app.state, "services", None)
        for check, count in sorted(
            (services.profiler.fallback_checks() if services else {}).items()
        ):
            family.add_metric([check], count)
        yield family


class StoreAndIndex(Collector):
    """What an operator watches per instance, read at each scrape: the store's connections
    (``iprof_store_connections{state}``: open, idle, waiting for one), the requests answered
    503 because the database could not be reached (``iprof_store_unavailable_total{why}``) and
    the index build served (``iprof_index_build_info{build}``)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        services = getattr(self.app.state, "services", None)
        stats = services.store.engine.stats() if services else {}
        connections = GaugeMetricFamily(
            "iprof_store_connections", "Database connections of this process", labels=["state"]
        )
        for state, key in (("open", "connections"), ("idle", "idle"), ("waiting", "waiting")):
            if key in stats:
                connections.add_metric([state], stats[key])
        yield connections
        unavailable = CounterMetricFamily(
            "iprof_store_unavailable",
            "Requests answered 503 store_unavailable, by why",
            labels=["why"],
        )
        for why in ("timeout", "connection"):
            unavailable.add_metric([why], stats.get(f"unavailable_{why}", 0))
        yield unavailable
        build = GaugeMetricFamily(
            "iprof_index_build_info", "The index build this instance serves (1)", labels=["build"]
        )
        served = services.index.serving_build() if services else None
        if served:
            build.add_metric([served], 1)
        yield build


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413, whether or not they declare a length:
    a chunked upload is counted as it arrives. A JSON body that is not UTF-8 (RFC 8259 allows
    no other encoding) gets a 400 saying so, checked as it arrives too: the framework would
    only say "There was an error parsing the body"."""

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
        decoder = codecs.getincrementaldecoder("utf-8")() if _is_json(scope) else None

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.limit:
                # FastAPI re-raises HTTPException from body reading; the error handler answers.
                raise StarletteHTTPException(413, self._message())
            if decoder is not None:
                _check_utf8(decoder, chunk, received - len(chunk), message.get("more_body", False))
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"request bodies are limited to {self.limit} bytes"

    def _refuse(self) -> JSONResponse:
        return envelope(413, "payload_too_large", self._message())


def _is_json(scope: Scope) -> bool:
    """A JSON body, or one that does not say (the API reads every body as JSON)."""
    kind = Headers(scope=scope).get("content-type", "application/json").split(";")[0].strip()
    return kind == "application/json" or kind.endswith("+json") or not kind


def _check_utf8(decoder: codecs.IncrementalDecoder, chunk: bytes, offset: int, more: bool) -> None:
    try:
        decoder.decode(chunk, final=not more)
    except UnicodeDecodeError as error:
        where = offset + error.start
        raise BodyError(
            400,
            "invalid_encoding",
            f"the request body is not valid UTF-8 (byte {where}); JSON must be sent as UTF-8",
        ) from None
