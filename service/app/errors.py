"""One error envelope for every failure: ``{"error": {"code", "message", "details"}}``.

Clients get a code they can branch on and a message written for them; never exception text or
a stack trace, which go to the log instead. A user with no events is one handler's 404
(``UnknownUser``, raised wherever a route finds it), not a check in every route.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.profiling.profiler import UnknownUser
from service.store import StoreUnavailable

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


class BodyError(StarletteHTTPException):
    """A request body refused while it is read, with its own code: FastAPI lets HTTP
    exceptions from body reading through, and would turn anything else into "There was an
    error parsing the body"."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(status, message)
        self.code = code


def envelope(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(status_code=status, content=body, headers=headers)


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: pydantic's "input" and "ctx" may echo huge or hostile values.
    return [
        {
            "loc": [str(part) for part in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": e.get("type"),
        }
        for e in error.errors()[:20]
    ]


async def _on_api_error(request: Request, error: ApiError) -> JSONResponse:
    return envelope(error.status, error.code, error.message, error.details, error.headers)


async def _on_unknown_user(request: Request, error: UnknownUser) -> JSONResponse:
    user_id = error.args[0] if error.args else "?"
    return envelope(404, "unknown_user", f"no events for user {user_id!r}")


async def _on_store_unavailable(request: Request, error: StoreUnavailable) -> JSONResponse:
    # An expected outage: one line in the log (the engine logs its edges), no traceback.
    return envelope(
        503,
        "store_unavailable",
        "the database is unavailable; retry shortly (a retried batch is never counted twice)",
        headers={"Retry-After": "1"},
    )


async def _on_validation(request: Request, error: RequestValidationError) -> JSONResponse:
    details = _validation_details(error)
    if any(d["type"] == "json_invalid" for d in details):
        return envelope(400, "malformed_json", "the request body is not valid JSON", details)
    where = ".".join(p for p in details[0]["loc"] if p != "body") if details else "request"
    message = f"invalid request: {where}: {details[0]['msg']}" if details else "invalid request"
    return envelope(422, "invalid_request", message, details)


async def _on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
    code = getattr(error, "code", None) or _CODES.get(error.status_code, "error")
    message = error.detail if isinstance(error.detail, str) else code.replace("_", " ")
    return envelope(error.status_code, code, message, headers=getattr(error, "headers", None))


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return envelope(500, "internal_error", "the server failed to handle this request")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(UnknownUser, _on_unknown_user)  # type: ignore[arg-type]
    app.add_exception_handler(StoreUnavailable, _on_store_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _on_unexpected)
