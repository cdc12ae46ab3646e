"""Dependencies shared by the routers: the service parts and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.app.container import Services
from service.app.errors import ApiError
from service.app.ratelimit import retry_after_header
from service.core.config import ApiSettings
from service.profiling.profiler import Profiler
from service.retrieval.index.serving import IndexHolder
from service.retrieval.recommender import Recommender
from service.store import Store


# The dependencies are ``async``, though they never wait: a plain ``def`` dependency is run in
# the thread pool, two hand-offs per request for a dictionary lookup and a token bucket.
async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


# What a route needs, by name: a route states its parts instead of taking the whole bag.
async def get_store(request: Request) -> Store:
    return request.app.state.services.store  # type: ignore[no-any-return]


async def get_profiler(request: Request) -> Profiler:
    return request.app.state.services.profiler  # type: ignore[no-any-return]


async def get_recommender(request: Request) -> Recommender:
    return request.app.state.services.recommender  # type: ignore[no-any-return]


async def get_index(request: Request) -> IndexHolder:
    return request.app.state.services.index  # type: ignore[no-any-return]


async def get_api_settings(request: Request) -> ApiSettings:
    return request.app.state.services.settings.api  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(get_store)]
ProfilerDep = Annotated[Profiler, Depends(get_profiler)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
IndexDep = Annotated[IndexHolder, Depends(get_index)]
ApiSettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]
_bearer = HTTPBearer(auto_error=False)


async def require_key(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The API key check (only when keys are configured), then the caller's rate limit."""
    keys = services.settings.api.api_keys
    caller = f"address {request.client.host if request.client else 'unknown'}"
    if keys:
        if credentials is None:
            _limit(services, caller)  # failed attempts count too: no free key guessing
            raise ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <key>'")
        offered = credentials.credentials.encode()
        # Compare with every key, always, so timing tells nothing about which one nearly matched.
        matches = [hmac.compare_digest(offered, key.encode()) for key in keys]
        if not any(matches):
            _limit(services, caller)
            raise ApiError(403, "forbidden", "the API key is not valid")
        caller = f"key {matches.index(True)}"
    _limit(services, caller)


def _limit(services: Services, caller: str) -> None:
    wait = services.limiter.acquire(caller)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests from this {caller.split()[0]}; retry in {wait:.1f} s",
            headers={"Retry-After": retry_after_header(wait)},
        )


def check_batch(size: int, api: ApiSettings) -> None:
    limit = api.max_batch
    if size > limit:
        raise ApiError(413, "batch_too_large", f"{size} records in one batch; the limit is {limit}")
