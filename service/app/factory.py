"""The REST API's app factory: its lifespan (services built, index warmed, GC frozen), error
handlers, middleware and routers.

Routes are plain ``def`` or hand their work to one thread call: model, index and database work
never blocks the event loop.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from service import __version__
from service.app.container import build_services
from service.app.errors import install_error_handlers
from service.app.handler_threads import HANDLER_THREADS
from service.app.inspector import inspector_api, install_inspector_pages
from service.app.middleware import MAX_BODY_BYTES, BodyLimit, install_metrics
from service.app.routes import catalog, events, users
from service.app.routes.probes import probes_router
from service.core.config import Settings
from service.embedding.encoder import Embedder
from service.summarizers.base import Summarizer


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
        services.index.watch()
        app.state.services = services
        # What start-up loaded (the index's ids, the models) lives as long as the app. Left to
        # the garbage collector, each full collection walked it all: 0.46 s with a 100k-item
        # index, the longest stall a request saw under load. Frozen, collections skip it.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()
        services.index.stop_watching()
        services.close()

    app = FastAPI(
        title="interest-profiler",
        version=__version__,
        description="Readable interest profiles, drift and recommendations from user events.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    install_metrics(app)  # added last: outermost, so it sees 413s and 500s too
    app.include_router(probes_router())
    for feature in (catalog, events, users):
        app.include_router(feature.router)
    app.include_router(inspector_api())
    install_inspector_pages(app)
    return app
