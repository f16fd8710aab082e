"""Routes of patient data out: `$export` (FHIR Bulk Data Access 2.0) and `Patient/{id}/$everything`.
They come before the `/{type}` routes, which would otherwise take `$export` for a type."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from flode.api import routes
from flode.api.authentication import authenticate
from flode.api.body import read_body
from flode.api.negotiation import check_content_type
from flode.api.responses import respond
from flode.bulk import everything as everything_operation
from flode.bulk import export
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import not_found

NDJSON = "application/fhir+ndjson"


def _prefer(request: Request) -> tuple[bool, bool]:
    """`Prefer: respond-async` and `Prefer: handling=lenient` (RFC 7240)."""
    tokens = {
        part.strip().replace(" ", "")
        for header in request.headers.getlist("prefer")
        for part in header.split(",")
    }
    return "respond-async" in tokens, "handling=lenient" in tokens


def _request_url(request: Request, ctx: RequestContext) -> str:
    path = request.url.path.removeprefix(routes.config_of(request).base_path)
    query = request.url.query
    return f"{ctx.base_url}{path}" + (f"?{query}" if query else "")


async def kick_off(request: Request) -> Response:
    """`[base]/$export`, `[base]/Patient/$export`, `[base]/Group/{id}/$export`."""
    ctx = routes.context(request)
    path = request.url.path
    group_id = request.path_params.get("id")
    level = "group" if group_id is not None else "patient" if "/Patient/" in path else "system"
    body = None
    if request.method == "POST":
        raw = await read_body(request, routes.config_of(request).max_body_bytes)
        if raw.strip():
            check_content_type(request)
            body = json.loads(raw)
    respond_async, lenient = _prefer(request)
    outcome = await export.kick_off(
        routes.services_of(request),
        ctx,
        level,
        group_id,
        routes.params(request),
        body,
        respond_async=respond_async,
        lenient=lenient,
        request_url=_request_url(request, ctx),
    )
    return respond(request, ctx, outcome)


async def job(request: Request) -> Response:
    """`GET [base]/$export/{job}` (status, then the manifest) and `DELETE` (cancel)."""
    ctx = routes.context(request)
    services, id = routes.services_of(request), request.path_params["job"]
    if request.method == "DELETE":
        return respond(request, ctx, await export.cancel(services, ctx, id))
    outcome = await export.status(services, ctx, id)
    if outcome.status == 200:
        # The manifest is plain JSON, not a FHIR resource (export.html#response---complete-status).
        return Response(json.dumps(outcome.body), 200, outcome.headers, "application/json")
    return respond(request, ctx, outcome)


def _download_context(request: Request) -> RequestContext:
    """A file request negotiates nothing: it asks for NDJSON, whatever its `Accept` says. It
    needs the token of the client that started the export."""
    config = routes.config_of(request)
    host = request.headers.get("host", "localhost")
    base_url = config.public_base_url or f"{request.url.scheme}://{host}{config.base_path}"
    base_url = base_url.rstrip("/")
    request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
    who = authenticate(request, config, routes.services_of(request).tokens, base_url)
    return RequestContext(request_id=request_id[:64], base_url=base_url, **who)


async def file(request: Request) -> Response:
    """`GET [base]/$export/{job}/{name}`: one NDJSON file of a completed export."""
    ctx = _download_context(request)
    p = request.path_params
    path = await export.file(routes.services_of(request), ctx, p["job"], p["name"])
    if not path.is_file():
        raise not_found(f"Export {p['job']} has no file '{p['name']}' any more")
    return FileResponse(path, media_type=NDJSON, filename=None)


async def everything(request: Request) -> Response:
    """`GET [base]/Patient/{id}/$everything`."""
    ctx = routes.context(request)
    outcome = await everything_operation.everything(
        routes.services_of(request), ctx, request.path_params["id"], routes.params(request)
    )
    return respond(request, ctx, outcome)


def bulk_routes() -> list[Route]:
    return [
        Route("/$export", kick_off, methods=["GET", "POST"]),
        Route("/$export/{job}", job, methods=["GET", "DELETE"]),
        Route("/$export/{job}/{name}", file, methods=["GET"]),
        Route("/Patient/$export", kick_off, methods=["GET", "POST"]),
        Route("/Group/{id}/$export", kick_off, methods=["GET", "POST"]),
        Route("/Patient/{id}/$everything", everything, methods=["GET"]),
    ]
