"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.app.deps import ServicesDep


def probes_router() -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/health", operation_id="health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/ready", operation_id="ready", responses={503: {"description": "Not ready"}})
    def ready(services: ServicesDep, response: Response) -> dict[str, object]:
        llm_problem = services.summarizer.problem
        # The build being served, and the store's engine: what tells instances behind one
        # load balancer apart (or shows they agree).
        index = services.index.serving_build()
        store_problem = services.store.problem()
        checks = {
            "store": store_problem or "ok",
            "store_engine": services.store.dialect,
            "index_build": index,
            "embedder": services.embedder.model_id,
            "summarizer": {**services.summarizer.describe(), "problem": llm_problem},
            "index": "ok" if services.index.loaded else services.index.problem,
        }
        ready = services.index.loaded and llm_problem is None and store_problem is None
        if not ready:
            response.status_code = 503
        return {"ready": ready, "checks": checks}

    return router
