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
from lookalike.errors import LookalikeError

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


async def _lookalike_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LookalikeError)
    if exc.http_status >= 500:
        log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_response(exc.http_status, type(exc).__name__, str(exc))


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
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Invalid parameters or body"},
}


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the given error statuses (422 always included)."""
    descriptions = {
        400: "Bad image (corrupt, truncated, too small) or unreadable image source",
        401: "Missing or wrong X-API-Key",
        404: "Unknown product (or, for clicks, unknown search)",
        413: "Body or image over the size limit, or a decompression bomb",
        415: "Not an image format we read, or an unsupported content type",
        503: "Model, index or catalog unavailable",
    }
    responses = dict(ERROR_RESPONSES)
    for status in statuses:
        responses[status] = {"model": ErrorResponse, "description": descriptions[status]}
    return responses
