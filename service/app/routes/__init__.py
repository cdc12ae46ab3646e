"""The REST routes, one module per feature; ``/v1`` routes share the API-key check."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.app.deps import require_key


def v1_router(prefix: str = "") -> APIRouter:
    """A feature's router under ``/v1``: every route checks the API key and the rate limit.

    The prefix is the router's own (not given at ``include_router``) so that a route's template,
    which the metrics label requests by, is the full path.
    """
    return APIRouter(prefix=f"/v1{prefix}", dependencies=[Depends(require_key)])
