"""The access log over HTTP (docs/audit.md): review (`GET [base]/AuditEvent?…`,
`GET [base]/AuditEvent/{id}`, `POST [base]/AuditEvent/_search`, `GET [base]/Patient/{id}/
AuditEvent`), the patient's log extract (`GET [base]/Patient/{id}/$log-extract`, as a Bundle,
an HTML page or a PDF), and systematic review: drawing a sample
(`GET|POST [base]/AuditEvent/$review-sample`), recording what a reviewer concluded
(`POST [base]/AuditEvent/$review-result`) and reading it back
(`GET [base]/AuditEvent/$review-results`).

AuditEvents are served from the log itself, not from the resource tables; the FHIR routes
splice these in before their generic `/{type}` routes. Writes of AuditEvent fall through to
the generic routes, where every write refuses the type (flode.audit.append_only).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from flode.api import routes
from flode.api.body import read_optional_json
from flode.api.negotiation import FORMAT_PARAMS, Prefer
from flode.api.responses import fhir_response
from flode.audit import extract, parameters, results, review, sample
from flode.audit.pdf import pdf_document
from flode.context import RequestContext
from flode.fhir.bundle import etag
from flode.fhir.errors import error

HTML, PDF = "text/html", "application/pdf"
_FORMATS = {"html": HTML, HTML: HTML, "pdf": PDF, PDF: PDF}


async def search(request: Request) -> Response:
    """`GET [base]/AuditEvent?…`, `POST [base]/AuditEvent/_search` and
    `GET [base]/Patient/{id}/AuditEvent?…` (the patient's compartment)."""
    ctx = routes.context(request)
    services = routes.services_of(request)
    params = await routes.search_params(request)
    if "id" in request.path_params:
        params.append(("patient", request.path_params["id"]))
    found = await review.find(
        services.store.pool,
        ctx,
        params,
        default_count=services.default_page_size,
        max_count=services.max_page_size,
        strict=Prefer.of(request).strict,
    )
    return fhir_response(request, 200, review.search_bundle(ctx, found))


async def read(request: Request) -> Response:
    """`GET [base]/AuditEvent/{id}`."""
    ctx = routes.context(request)
    id = request.path_params["id"]
    if id.startswith(("_", "$")):  # `_history` and operations: not a FHIR id
        raise error(405, "not-supported", "AuditEvent supports read and search only")
    content = await review.read(routes.services_of(request).store.pool, ctx, id)
    return fhir_response(request, 200, content, {"ETag": etag(1)})


def _extract_format(request: Request) -> str | None:
    """text/html or application/pdf when asked for (by `_format`, or first in `Accept`);
    None for FHIR JSON."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        return _FORMATS.get(fmt.lower().split(";")[0].strip())
    accept = request.headers.get("accept", "")
    first = accept.split(",")[0].split(";")[0].strip().lower()
    return first if first in (HTML, PDF) else None


def _context(request: Request, media_type: str | None) -> RequestContext:
    """The request context; for HTML or PDF, negotiated as if JSON had been asked for (FHIR
    content negotiation knows JSON alone, and everything but the body is FHIR as usual)."""
    if media_type is None:
        return routes.context(request)
    scope = dict(request.scope)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
    scope["query_string"] = urlencode(kept).encode()
    scope["headers"] = [(k, v) for k, v in request.scope["headers"] if k != b"accept"]
    return routes.context(Request(scope, request.receive))


async def log_extract(request: Request) -> Response:
    """`GET [base]/Patient/{id}/$log-extract` (DOMAIN.md L6)."""
    media_type = _extract_format(request)
    ctx = _context(request, media_type)
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMS]
    pool = routes.services_of(request).store.pool
    found = await extract.extract(pool, ctx, request.path_params["id"], params)
    if media_type == HTML:
        return HTMLResponse(extract.html_page(found))
    if media_type == PDF:
        content = await asyncio.to_thread(pdf_document, found)
        name = f"logguttag-{found.patient}.pdf"
        disposition = {"Content-Disposition": f'inline; filename="{name}"'}
        return Response(content, 200, disposition, PDF)
    return fhir_response(request, 200, extract.bundle_of(ctx, found))


async def _given(
    request: Request, operation: str, single: tuple[str, ...], repeated: tuple[str, ...]
) -> parameters.Given:
    """The parameters of the URL and, for a POST, of its Parameters body."""
    body = None
    if request.method == "POST":
        body = await read_optional_json(request, routes.config_of(request).max_body_bytes)
    return parameters.given(operation, routes.params(request), body, single, repeated)


async def review_sample(request: Request) -> Response:
    """`GET|POST [base]/AuditEvent/$review-sample` (DOMAIN.md L5, flode.audit.sample)."""
    ctx = routes.context(request)
    asked = await _given(request, sample.SAMPLE, sample.SINGLE, sample.REPEATED)
    drawn = await sample.draw(routes.services_of(request).store.pool, ctx, asked)
    return fhir_response(request, 200, sample.sample_bundle(ctx, drawn))


async def review_result(request: Request) -> Response:
    """`POST [base]/AuditEvent/$review-result`: store a reviewer's conclusion (flode.audit.
    results); answers the Basic it is kept as."""
    ctx = routes.context(request)
    given = await _given(request, results.RESULT, results.RESULT_SINGLE, results.RESULT_REPEATED)
    content = await results.record(routes.services_of(request).store.pool, ctx, given)
    return fhir_response(request, 200, content)


async def review_results(request: Request) -> Response:
    """`GET [base]/AuditEvent/$review-results?reviewer&entry&from&to&outcome`."""
    ctx = routes.context(request)
    services = routes.services_of(request)
    found = await results.find_results(
        services.store.pool,
        ctx,
        routes.params(request),
        default_count=services.default_page_size,
        max_count=services.max_page_size,
    )
    return fhir_response(request, 200, results.results_bundle(ctx, found))


def log_routes() -> list[Route]:
    return [
        Route("/AuditEvent", search, methods=["GET"]),
        # Before /AuditEvent/{id}, which would take them for ids.
        Route("/AuditEvent/$review-sample", review_sample, methods=["GET", "POST"]),
        Route("/AuditEvent/$review-result", review_result, methods=["POST"]),
        Route("/AuditEvent/$review-results", review_results, methods=["GET"]),
        Route("/AuditEvent/_search", search, methods=["POST"]),
        Route("/AuditEvent/{id}", read, methods=["GET"]),
        Route("/Patient/{id}/AuditEvent", search, methods=["GET"]),
        Route("/Patient/{id}/$log-extract", log_extract, methods=["GET"]),
    ]
