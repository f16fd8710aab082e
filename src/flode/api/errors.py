"""The one boundary where every failure becomes an OperationOutcome (DESIGN.md principle 7).
A client never sees a stack trace; the log does."""

from __future__ import annotations

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from flode.api.negotiation import FHIR_JSON
from flode.fhir import json
from flode.fhir.errors import FhirError, Issue, operation_outcome

log = structlog.get_logger("flode.api")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly"}


def _outcome(status: int, issues: list[Issue], headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(operation_outcome(issues))
    return Response(body, status, headers, f"{FHIR_JSON}; charset=utf-8")


async def fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return _outcome(exc.status, exc.issues, exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"No FHIR endpoint at {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    code = _HTTP_CODES.get(exc.status_code, "processing")
    return _outcome(exc.status_code, [Issue("error", code, message)], dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    issue = Issue("fatal", "exception", "An internal error occurred; it has been logged")
    return _outcome(500, [issue])
