"""Dependencies shared by the routers: the service parts and the API-key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError
from .services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False)


def require_key(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    keys = services.settings.api_keys
    if not keys:
        return
    if credentials is None:
        raise ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <key>'")
    offered = credentials.credentials.encode()
    # Compare against every key, always, so timing tells nothing about which one nearly matched.
    matches = [hmac.compare_digest(offered, key.encode()) for key in keys]
    if not any(matches):
        raise ApiError(403, "forbidden", "the API key is not valid")
