"""One JSON error shape for every failure: `{"error": {"type", "message"}}`.

Typed `LookalikeError`s carry their HTTP status; request validation is 422; Starlette's
own HTTP errors (unknown route, wrong method, body too large) keep their status. Anything
unexpected is logged and answered with a 500 in the same shape, without internals.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lookalike.api.schemas import ErrorResponse
from lookalike.errors import LookalikeError, TryLater

log = logging.getLogger(__name__)


def error_response(
    status: int,
    error_type: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": error_type, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def status_type(status: int) -> str:
    """`413` -> `ContentTooLarge`: a stable name for errors that have no class of ours."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "HTTPError"
    return "".join(word.capitalize() for word in phrase.replace("-", " ").split())


def error_reply(exc: LookalikeError) -> JSONResponse:
    """The answer to a typed error, with its headers (`Retry-After`, `WWW-Authenticate`);
    middlewares outside the app's exception handlers answer with it directly."""
    return error_response(
        exc.http_status, type(exc).__name__, str(exc), headers=exc.http_headers() or None
    )


async def _lookalike_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LookalikeError)
    # Shed load is expected under pressure and counted in /metrics: a line per refusal
    # would flood the log exactly when it matters.
    if exc.http_status >= 500 and not isinstance(exc, TryLater):
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_reply(exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {key: value for key, value in error.items() if key in ("loc", "msg", "type")}
        for error in exc.errors()
    ]
    message = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in errors
    )
    return error_response(422, "ValidationError", message or "invalid request", details=errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    error_type = getattr(exc, "error_type", None) or status_type(exc.status_code)
    return error_response(exc.status_code, error_type, message, headers=exc.headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_response(500, "InternalError", "internal server error (see the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LookalikeError, _lookalike_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


# Documented on every route that can fail, so the OpenAPI schema shows the error shape.
def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_DESCRIPTIONS = {
    400: "Bad image (corrupt, truncated, too small) or unreadable image source",
    401: "No API key where one is needed, or one that is not valid "
    "(`X-API-Key` or `Authorization: Bearer`)",
    403: "The key's scope does not cover this endpoint",
    404: "Unknown product",
    413: "Body or image over the size limit, or a decompression bomb",
    415: "Not an image format we read, or an unsupported content type",
    422: "Invalid parameters or body",
    429: "Over a rate limit of the key or client address (retry after `Retry-After` s)",
    503: "Model, index or catalog unavailable, or the server is shedding load "
    "(retry after `Retry-After` s)",
    504: "No answer within the request deadline (retry after `Retry-After` s)",
}
# Any API route may answer these: a key that is not valid, limits, shedding, the deadline.
ALWAYS = (401, 422, 429, 503, 504)


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses and those in ALWAYS."""
    return {status: _error(_DESCRIPTIONS[status]) for status in sorted({*ALWAYS, *statuses})}
