"""FHIR REST routes (https://hl7.org/fhir/R4/http.html): each maps one URL and method to an
interaction and nothing more."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from flode.api import audit_routes, bulk, emergency_routes, module_routes
from flode.api.authentication import authenticate
from flode.api.body import read_body, read_json
from flode.api.capability import capability_statement
from flode.api.negotiation import (
    FORMAT_PARAMS,
    JSON_PATCH,
    Prefer,
    check_content_type,
    response_type,
    version_from_etag,
)
from flode.api.responses import fhir_response, respond
from flode.api.subscriptions import subscription_routes
from flode.auth.tokens import root_of
from flode.config import Config
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import bad_request, error
from flode.interactions import (
    batch,
    create,
    delete,
    history,
    patch,
    read,
    reindex,
    search,
    update,
)
from flode.interactions.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def config_of(request: Request) -> Config:
    config: Config = request.app.state.config
    return config


def _refuse_nul(values: Iterable[str]) -> None:
    """No FHIR id, search value or parameter holds a NUL, and PostgreSQL text cannot."""
    if any("\x00" in value for value in values):
        raise bad_request("The request holds a NUL character (%00), which no FHIR value may")


def context(request: Request, *, public: bool = False) -> RequestContext:
    """Built once per request at the edge, with who is asking from the access token (401
    without a valid one, unless the endpoint is `public`)."""
    # Negotiated once, before any work: an unanswerable Accept is refused up front.
    request.state.media_type = response_type(request)
    _refuse_nul(request.path_params.values())
    _refuse_nul(part for item in request.query_params.multi_items() for part in item)
    config = config_of(request)
    base_url = (config.public_base_url or _base_url(request, config.base_path)).rstrip("/")
    request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
    who = {} if public else authenticate(request, config, services_of(request).tokens, base_url)
    return RequestContext(
        request_id=request_id[:64],
        base_url=base_url,
        care_relationship_days=config.care_relationship_days,
        **who,
    )


def _base_url(request: Request, base_path: str) -> str:
    host = request.headers.get("host")
    if host is None:
        server = request.scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{request.scope['scheme']}://{host}{base_path}"


def params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in FORMAT_PARAMS]


def _criteria(raw: str) -> list[tuple[str, str]]:
    query = raw.split("?", 1)[1] if "?" in raw else raw
    found = parse_qsl(query, keep_blank_values=True)
    if not found:
        raise bad_request("If-None-Exist must hold search criteria like 'identifier=sys|123'")
    _refuse_nul(part for item in found for part in item)
    return found


async def metadata(request: Request) -> Response:
    ctx = context(request, public=True)
    state = request.app.state
    services, config = services_of(request), config_of(request)
    # Built once per set of search parameters and topics and server URL (the authorization
    # endpoints are named in it): the rest is the code, which does not change while it runs.
    key = (services.parameters.generation, services.events.topics.generation, ctx.base_url)
    cached: dict[tuple[int, int, str], bytes] = getattr(state, "capability_statements", None) or {}
    if key not in cached:
        if len(cached) >= 8:
            cached.clear()
        root = root_of(ctx.base_url, config.base_path)
        cached[key] = json.dumps(capability_statement(services, config, root))
        state.capability_statements = cached
    return fhir_response(request, 200, cached[key])


async def after_write(request: Request, resource_type: str) -> None:
    """A SearchParameter written changes what search and indexing know; a Subscription
    written is handshaken (or stopped) once the write has committed; a Basic written may be
    a SubscriptionTopic, offered (or no longer) from now on."""
    if resource_type == "SearchParameter":
        await services_of(request).parameters.refresh()
    elif resource_type == "Subscription":  # the dispatcher looks at Subscriptions again
        await services_of(request).events.refresh(services_of(request).store.pool)
    elif resource_type == "Basic":
        await services_of(request).events.topics_written()


async def reindex_start(request: Request) -> Response:
    """`POST [base]/$reindex` and `POST [base]/{type}/$reindex`."""
    ctx = context(request)
    raw = await read_body(request, config_of(request).max_body_bytes)
    if raw.strip():
        check_content_type(request)
    body = json.loads(raw) if raw.strip() else None
    outcome = await reindex.start(services_of(request), ctx, request.path_params.get("type"), body)
    return respond(request, ctx, outcome)


async def reindex_job(request: Request) -> Response:
    """`GET [base]/$reindex/{id}` (progress) and `DELETE` (cancel)."""
    ctx = context(request)
    services, id = services_of(request), request.path_params["id"]
    if request.method == "DELETE":
        return respond(request, ctx, await reindex.cancel(services, ctx, id))
    return respond(request, ctx, await reindex.status(services, ctx, id))


async def system_history(request: Request) -> Response:
    ctx = context(request)
    outcome = await history.history(services_of(request), ctx, params(request))
    return respond(request, ctx, outcome)


async def type_level(request: Request) -> Response:
    ctx = context(request)
    services = services_of(request)
    resource_type = request.path_params["type"]
    method = request.method
    if resource_type in ("metadata", "_history"):  # GET-only endpoints, not resource types
        raise error(405, "not-supported", f"{method} is not allowed on {request.url.path}")
    limit = config_of(request).max_body_bytes
    if method in ("GET", "HEAD"):
        outcome = await search.search(
            services, ctx, resource_type, params(request), Prefer.of(request).strict
        )
        return respond(request, ctx, outcome)
    if method == "POST":
        check_content_type(request)
        body = await read_json(request, limit)
        condition = request.headers.get("if-none-exist")
        outcome = await create.create(
            services, ctx, resource_type, body, None if condition is None else _criteria(condition)
        )
        await after_write(request, resource_type)
        return respond(request, ctx, outcome, write=True)
    criteria = params(request)
    if not criteria:
        raise bad_request(
            f"{method} on a resource type needs search criteria (a conditional {method})"
        )
    if method == "PUT":
        check_content_type(request)
        body = await read_json(request, limit)
        if_match = version_from_etag(request.headers.get("if-match"), "If-Match")
        outcome = await update.conditional_update(
            services, ctx, resource_type, criteria, body, if_match
        )
    else:
        assert method == "DELETE"
        outcome = await delete.conditional_delete(services, ctx, resource_type, criteria)
    await after_write(request, resource_type)
    return respond(request, ctx, outcome, write=True)


FORM = "application/x-www-form-urlencoded"


async def search_params(request: Request) -> list[tuple[str, str]]:
    """The parameters of a search: the URL's, and for `POST …/_search` the form body's too
    (search.html#search: both may carry parameters)."""
    found = params(request)
    if request.method == "POST":
        check_content_type(request, (FORM,))
        body = await read_body(request, config_of(request).max_body_bytes)
        try:
            form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise bad_request("The form body of a _search is not UTF-8") from None
        _refuse_nul(part for item in form for part in item)
        found += [(k, v) for k, v in form if k not in FORMAT_PARAMS]
    return found


async def type_search(request: Request) -> Response:
    """`POST [type]/_search`: the same search as GET, parameters in a form body."""
    ctx = context(request)
    outcome = await search.search(
        services_of(request),
        ctx,
        request.path_params["type"],
        await search_params(request),
        Prefer.of(request).strict,
    )
    return respond(request, ctx, outcome)


async def system_search(request: Request) -> Response:
    """`GET [base]?…` and `POST [base]/_search`: all types, or those `_type` names."""
    ctx = context(request)
    outcome = await search.search(
        services_of(request), ctx, None, await search_params(request), Prefer.of(request).strict
    )
    return respond(request, ctx, outcome)


async def compartment_search(request: Request) -> Response:
    """`GET Patient/{id}/{type}` (or `/*`): a search within one patient's compartment."""
    ctx = context(request)
    p = request.path_params
    kind = p["kind"]
    outcome = await search.search(
        services_of(request),
        ctx,
        None if kind == "*" else kind,
        await search_params(request),
        Prefer.of(request).strict,
        compartment=(p["type"], p["id"]),
    )
    return respond(request, ctx, outcome)


async def type_history(request: Request) -> Response:
    ctx = context(request)
    outcome = await history.history(
        services_of(request), ctx, params(request), request.path_params["type"]
    )
    return respond(request, ctx, outcome)


def _not_modified(request: Request, response: Response) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {t.strip() for t in if_none_match.split(",")}
        etag = response.headers.get("etag", "")
        return "*" in tags or etag in tags or etag.removeprefix("W/") in tags
    since = request.headers.get("if-modified-since")
    modified = response.headers.get("last-modified")
    if since and modified:
        try:
            return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


async def instance(request: Request) -> Response:
    ctx = context(request)
    services = services_of(request)
    resource_type, id = request.path_params["type"], request.path_params["id"]
    method = request.method
    limit = config_of(request).max_body_bytes
    if method in ("GET", "HEAD"):
        outcome = await read.read(services, ctx, resource_type, id)
        response = respond(request, ctx, read.subsetted(services, outcome, params(request)))
        if _not_modified(request, response):
            return Response(status_code=304, headers={"ETag": response.headers["etag"]})
        return response
    if_match = version_from_etag(request.headers.get("if-match"), "If-Match")
    if method == "PUT":
        check_content_type(request)
        body = await read_json(request, limit)
        outcome = await update.update(services, ctx, resource_type, id, body, if_match)
    elif method == "PATCH":
        check_content_type(request, (JSON_PATCH,))
        operations = await read_json(request, limit)
        outcome = await patch.patch(services, ctx, resource_type, id, operations, if_match)
    else:
        assert method == "DELETE"
        outcome = await delete.delete(services, ctx, resource_type, id, if_match)
    await after_write(request, resource_type)
    return respond(request, ctx, outcome, write=True)


async def instance_history(request: Request) -> Response:
    ctx = context(request)
    outcome = await history.history(
        services_of(request),
        ctx,
        params(request),
        request.path_params["type"],
        request.path_params["id"],
    )
    return respond(request, ctx, outcome)


async def version_read(request: Request) -> Response:
    ctx = context(request)
    p = request.path_params
    services = services_of(request)
    outcome = await read.vread(services, ctx, p["type"], p["id"], p["vid"])
    outcome = read.subsetted(services, outcome, params(request))
    return respond(request, ctx, outcome)


async def bundle(request: Request) -> Response:
    """`POST [base]`: a transaction or batch Bundle (http.html#transaction)."""
    ctx = context(request)
    check_content_type(request)
    body = await read_json(request, config_of(request).max_body_bytes)
    outcome = await batch.submit(services_of(request), ctx, body, Prefer.of(request).return_)
    entries = body.get("entry") if isinstance(body, dict) else None
    types = set()  # the resource type each entry's URL names
    for entry in entries if isinstance(entries, list) else []:
        found = entry.get("request") if isinstance(entry, dict) else None
        url = found.get("url") if isinstance(found, dict) else None
        if isinstance(url, str):
            types.add(url.removeprefix(ctx.base_url).lstrip("/").partition("?")[0].split("/")[0])
    for resource_type in sorted(types & {"Basic", "SearchParameter", "Subscription"}):
        await after_write(request, resource_type)
    return respond(request, ctx, outcome)


def fhir_routes() -> list[Route]:
    return [
        Route("/", system_search, methods=["GET"]),
        Route("/", bundle, methods=["POST"]),
        Route("/metadata", metadata, methods=["GET"]),
        Route("/_history", system_history, methods=["GET"]),
        Route("/_search", system_search, methods=["POST"]),
        Route("/$reindex", reindex_start, methods=["POST"]),
        Route("/$reindex/{id}", reindex_job, methods=["GET", "DELETE"]),
        *bulk.bulk_routes(),
        *emergency_routes.emergency_routes(),
        *subscription_routes(),
        *audit_routes.log_routes(),  # the access log, before the generic type routes
        *module_routes.module_routes(),  # the module registry, for the administrator
        Route("/{type}", type_level, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/{type}/_history", type_history, methods=["GET"]),
        Route("/{type}/_search", type_search, methods=["POST"]),
        Route("/{type}/$reindex", reindex_start, methods=["POST"]),
        Route("/{type}/{id}", instance, methods=["GET", "PUT", "PATCH", "DELETE"]),
        Route("/{type}/{id}/_history", instance_history, methods=["GET"]),
        Route("/{type}/{id}/_history/{vid}", version_read, methods=["GET"]),
        Route("/{type}/{id}/{kind}", compartment_search, methods=["GET"]),
    ]
