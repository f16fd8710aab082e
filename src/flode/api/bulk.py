"""Routes of patient data out and in: `$export` (FHIR Bulk Data Access 2.0),
`Patient/{id}/$everything` and `$import`. They come before the `/{type}` routes, which would
otherwise take `$export` for a type."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from flode.api import routes
from flode.api.authentication import authenticate
from flode.api.body import read_body
from flode.api.negotiation import check_content_type
from flode.api.responses import respond
from flode.bulk import everything as everything_operation
from flode.bulk import export, imports
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import not_found
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services

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


JobAction = Callable[[Services, RequestContext, str], Awaitable[Outcome]]


async def _job(request: Request, status: JobAction, cancel: JobAction) -> Response:
    """`GET` (status, then the result) and `DELETE` (cancel) of a Bulk Data job."""
    ctx = routes.context(request)
    services, id = routes.services_of(request), request.path_params["job"]
    if request.method == "DELETE":
        return respond(request, ctx, await cancel(services, ctx, id))
    outcome = await status(services, ctx, id)
    if outcome.status == 200:
        # The manifest (or result) is plain JSON, not a FHIR resource
        # (export.html#response---complete-status).
        return Response(json.dumps(outcome.body), 200, outcome.headers, "application/json")
    return respond(request, ctx, outcome)


async def job(request: Request) -> Response:
    """`GET [base]/$export/{job}` and `DELETE`."""
    return await _job(request, export.status, export.cancel)


def _download_context(request: Request) -> RequestContext:
    """A file request negotiates nothing: it asks for NDJSON, whatever its `Accept` says. It
    needs the token of the client that started the export (or import)."""
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


async def import_kick_off(request: Request) -> Response:
    """`POST [base]/$import`."""
    ctx = routes.context(request)
    raw = await read_body(request, routes.config_of(request).max_body_bytes)
    if raw.strip():
        check_content_type(request)
    respond_async, _ = _prefer(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    outcome = await imports.kick_off(
        routes.services_of(request),
        ctx,
        json.loads(raw) if raw.strip() else None,
        respond_async=respond_async,
        request_url=_request_url(request, ctx),
        bearer=token.strip() if scheme.lower() == "bearer" and token.strip() else None,
    )
    return respond(request, ctx, outcome)


async def import_job(request: Request) -> Response:
    """`GET [base]/$import/{job}` and `DELETE`."""
    return await _job(request, imports.status, imports.cancel)


async def import_file(request: Request) -> Response:
    """`GET [base]/$import/{job}/{name}`: the OperationOutcomes of an input's errors."""
    ctx = _download_context(request)
    p = request.path_params
    lines = await imports.error_file(routes.services_of(request), ctx, p["job"], p["name"])
    return Response("".join(f"{line}\n" for line in lines), 200, media_type=NDJSON)


def bulk_routes() -> list[Route]:
    return [
        Route("/$import", import_kick_off, methods=["POST"]),
        Route("/$import/{job}", import_job, methods=["GET", "DELETE"]),
        Route("/$import/{job}/{name}", import_file, methods=["GET"]),
        Route("/$export", kick_off, methods=["GET", "POST"]),
        Route("/$export/{job}", job, methods=["GET", "DELETE"]),
        Route("/$export/{job}/{name}", file, methods=["GET"]),
        Route("/Patient/$export", kick_off, methods=["GET", "POST"]),
        Route("/Group/{id}/$export", kick_off, methods=["GET", "POST"]),
        Route("/Patient/{id}/$everything", everything, methods=["GET"]),
    ]
