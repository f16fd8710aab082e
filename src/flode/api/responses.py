"""Turning an interaction's Outcome into an HTTP response, headers included."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from flode.access.protected import Masking
from flode.api.negotiation import Prefer, pretty, response_type
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.bundle import etag
from flode.fhir.errors import Issue, operation_outcome
from flode.interactions.outcome import Outcome


def fhir_response(
    request: Request,
    status: int,
    body: bytes | str | dict[str, Any] | None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A FHIR JSON response in the negotiated media type, pretty-printed if asked for."""
    media_type = getattr(request.state, "media_type", None) or response_type(request)
    content: bytes | None
    if body is None:
        content = None
    elif pretty(request):
        raw = body if isinstance(body, bytes | str) else json.dumps(body)
        content = json.dumps(json.loads(raw), pretty=True)
    elif isinstance(body, dict):
        content = json.dumps(body)
    else:
        content = body.encode() if isinstance(body, str) else body
    response = Response(content, status, headers, f"{media_type}; charset=utf-8")
    if content is None:
        del response.headers["content-type"]
    return response


def respond(
    request: Request, ctx: RequestContext, outcome: Outcome, write: bool = False
) -> Response:
    headers: dict[str, str] = dict(outcome.headers)
    version = outcome.version
    if version is not None:
        headers["ETag"] = etag(version.version)
        headers["Last-Modified"] = format_datetime(version.last_updated, usegmt=True)
        if write and outcome.status in (200, 201) and not version.deleted:
            headers["Location"] = (
                f"{ctx.base_url}/{version.resource_type}/{version.id}/_history/{version.version}"
            )
    status = outcome.status
    body: bytes | str | dict[str, Any] | None
    if outcome.body is not None:
        body = outcome.body
    elif version is not None:
        # Every stored resource answered on its own leaves here: a read's, and a write's
        # representation (flode.access.protected; a Bundle's entries are masked as they are made).
        body = version.content
        if body is not None:
            body = _masking(request, ctx).text(body)
    else:
        body = None
    if write:
        prefer = Prefer.of(request).return_
        if prefer == "minimal":
            body = None
        elif prefer == "OperationOutcome":
            issues = outcome.issues or [Issue("information", "informational", "All OK")]
            body = operation_outcome(issues)
    if status == 204 and body is not None:
        status = 200
    return fhir_response(request, status, body, headers)


def _masking(request: Request, ctx: RequestContext) -> Masking:
    """What the request sees of patients with protected identity."""
    config = getattr(request.app.state, "config", None)
    units = config.protected_identity_units if config is not None else ()
    return Masking.of(ctx, units)
