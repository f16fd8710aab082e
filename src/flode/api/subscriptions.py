"""Subscription routes (R4 Subscriptions Backport IG): writes of Subscription resources, which
are checked for what this server can serve (422 otherwise) and keep who wrote them, and the
operations `$status`, `$events`, `$deliveries` and `$get-ws-binding-token`, plus the
websocket the binding token opens. Reads, searches, history and deletes of Subscription
resources are the ordinary FHIR routes.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from flode.access import credentials, policy
from flode.access.protected import Masking
from flode.api.body import read_json
from flode.api.negotiation import JSON_PATCH, check_content_type, version_from_etag
from flode.api.responses import respond
from flode.context import RequestContext
from flode.events.notifications import notification_bundle, status_parameters
from flode.events.service import Events
from flode.events.subscription import Spec
from flode.fhir import json
from flode.fhir.dates import format_instant
from flode.fhir.errors import Issue, bad_request, not_found
from flode.interactions.create import existing_outcome, find_existing, insert_new, prepare_create
from flode.interactions.guard import check_read, guarded
from flode.interactions.outcome import Outcome
from flode.interactions.patch import patch_in
from flode.interactions.search_access import readable
from flode.interactions.services import Services
from flode.interactions.update import prepare_update, update_in
from flode.store.repository import Transaction

SUBSCRIPTION = "Subscription"
WS_TOKEN_SECONDS = 300


def _rest() -> ModuleType:
    # The FHIR routes module splices these routes into its own list, so it is looked up
    # when a request comes, not when this module is imported.
    from flode.api import routes

    return routes


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _limit(request: Request) -> int:
    limit: int = request.app.state.config.max_body_bytes
    return limit


CLASSIC = Issue(
    "warning",
    "not-supported",
    "This Subscription's criteria is an R4 search, not the canonical URL of a SubscriptionTopic: "
    "it is stored as written, but Flöde notifies only topic-based Subscriptions (the R4 "
    "Subscriptions Backport IG; the topics are listed in the CapabilityStatement)",
    ("Subscription.criteria",),
)


def _classic(resource: dict[str, Any]) -> bool:
    """A Subscription of the core R4 kind: its criteria a search (`Observation?code=…`), not
    a topic's canonical URL. Stored as written (any valid R4 resource is), never served."""
    criteria = resource.get("criteria")
    return isinstance(criteria, str) and not criteria.startswith(("http://", "https://", "urn:"))


def _checked(services: Services, ctx: RequestContext, resource: dict[str, Any]) -> Spec | None:
    """The Subscription as this server will serve it: 422 if it cannot be, 403 if the writer
    may read none of the topic's resources (every event would be withheld from them). The
    status a client writes is a request: anything but `off` becomes `requested`, and the
    server moves it on (handshake → `active`, or `error`). None for a core R4 Subscription,
    which is stored unchanged and not served."""
    if _classic(resource):
        return None
    spec = services.events.check(resource, services.search)
    for resource_type in sorted(spec.topic.resource_types):
        if policy.allows(ctx, resource_type, "r"):
            break
    else:
        raise policy.forbidden(
            f"The access token may read none of the resources of topic {spec.topic.url} "
            f"({', '.join(sorted(spec.topic.resource_types))}): it would never be notified"
        )
    if resource.get("status") != "off":
        resource["status"] = "requested"
    resource.pop("error", None)
    return spec


async def _written(request: Request, ctx: RequestContext, outcome: Outcome) -> Response:
    await _rest().after_write(request, SUBSCRIPTION)
    return respond(request, ctx, outcome, write=True)


async def create_subscription(request: Request) -> Response:
    """`POST Subscription` (and conditional create with If-None-Exist)."""
    ctx = _rest().context(request)
    services = _services(request)
    policy.require(ctx, SUBSCRIPTION, "c")
    check_content_type(request)
    resource = prepare_create(services, SUBSCRIPTION, await read_json(request, _limit(request)))
    spec = _checked(services, ctx, resource)
    raw = request.headers.get("if-none-exist")
    condition = None if raw is None else parse_qsl(raw.split("?", 1)[-1])
    if raw is not None and not condition:
        raise bad_request("If-None-Exist must hold search criteria like 'identifier=sys|123'")

    async def work(tx: Transaction) -> Outcome:
        if condition:
            existing = await find_existing(tx, services, SUBSCRIPTION, condition)
            if existing is not None:
                return existing_outcome(existing)
        version = await insert_new(tx, SUBSCRIPTION, resource)
        if spec is None:
            return Outcome(201, version, issues=[CLASSIC])
        await services.events.adopt(tx.conn, ctx, version.id, version.version, spec)
        return Outcome(201, version)

    return await _written(request, ctx, await guarded(services, ctx, SUBSCRIPTION, "c", None, work))


async def change_subscription(request: Request) -> Response:
    """`PUT Subscription/{id}` and `PATCH Subscription/{id}` (JSON Patch)."""
    ctx = _rest().context(request)
    services = _services(request)
    id = request.path_params["id"]
    policy.require(ctx, SUBSCRIPTION, "u")
    if_match = version_from_etag(request.headers.get("if-match"), "If-Match")
    found: list[Spec | None] = []

    def checked(resource: dict[str, Any]) -> dict[str, Any]:
        found.append(_checked(services, ctx, resource))
        return resource

    resource: dict[str, Any] | None = None
    operations: Any = None
    if request.method == "PUT":
        check_content_type(request)
        body = await read_json(request, _limit(request))
        resource = checked(prepare_update(services, SUBSCRIPTION, id, body))
    else:
        check_content_type(request, (JSON_PATCH,))
        operations = await read_json(request, _limit(request))

    async def adopted(tx: Transaction) -> Outcome:
        if resource is not None:
            current = await tx.current(SUBSCRIPTION, id)
            if current is not None and current.content is not None:
                credentials.restore(resource, json.loads(current.content))
                checked(resource)  # the spec with the restored headers
            else:
                credentials.restore(resource, None)
            outcome = await update_in(tx, SUBSCRIPTION, id, resource, if_match)
        else:
            outcome = await patch_in(tx, services, SUBSCRIPTION, id, operations, if_match, checked)
        version = outcome.version
        assert version is not None
        spec = found[-1]
        if spec is None:  # no longer served: the dispatcher finds it unusable and stops
            return replace(outcome, issues=[CLASSIC])
        await services.events.adopt(tx.conn, ctx, id, version.version, spec)
        return outcome

    return await _written(
        request, ctx, await guarded(services, ctx, SUBSCRIPTION, "u", id, adopted)
    )


# -- operations


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 15:
        raise bad_request(f"{name} must be a non-negative whole number, not '{raw}'", name)
    return int(raw)


def _searchset(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(entries),
        "timestamp": format_instant(datetime.now(UTC)),
        "entry": [
            {"fullUrl": f"urn:uuid:{e['id']}", "resource": e, "search": {"mode": "match"}}
            for e in entries
        ],
    }


def _status_of(events: Events, row: Any, base_url: str) -> dict[str, Any]:
    errors = [row["error"]] if row["status"] == "error" and row["error"] else []
    return status_parameters(
        base_url,
        row["id"],
        row["topic"],
        row["status"],
        "query-status",
        row["events"],
        errors=errors,
    )


async def subscription_status(request: Request) -> Response:
    """`GET Subscription/$status?id=…&status=…` and `GET Subscription/{id}/$status`."""
    ctx = _rest().context(request)
    services = _services(request)
    id = request.path_params.get("id")
    if id is not None:
        await check_read(services, ctx, SUBSCRIPTION, id)
        ids: list[str] | None = [id]
    else:
        policy.require(ctx, SUBSCRIPTION, "r")
        ids = [i for v in request.query_params.getlist("id") for i in v.split(",") if i] or None
    rows = [r for r in await services.events.rows(services.store.pool, ids) if not r["deleted"]]
    if id is None:
        wanted = {s for v in request.query_params.getlist("status") for s in v.split(",") if s}
        rows = [r for r in rows if not wanted or r["status"] in wanted]
        allowed = await readable(services, ctx, [(SUBSCRIPTION, r["id"]) for r in rows])
        rows = [r for r in rows if (SUBSCRIPTION, r["id"]) in allowed]
    elif not rows:
        raise not_found(f"Subscription/{id} is not known")
    body = _searchset([_status_of(services.events, r, ctx.base_url) for r in rows])
    return respond(request, ctx, Outcome(200, body=body))


async def subscription_events(request: Request) -> Response:
    """`GET Subscription/{id}/$events?eventsSinceNumber&eventsUntilNumber&content`: the
    subscription's events again, as a notification Bundle (type `query-event`)."""
    ctx = _rest().context(request)
    services = _services(request)
    id = request.path_params["id"]
    await check_read(services, ctx, SUBSCRIPTION, id)
    rows = await services.events.rows(services.store.pool, [id])
    if not rows:
        raise not_found(f"Subscription/{id} is not known")
    row = rows[0]
    content = request.query_params.get("content") or "id-only"
    if content not in ("empty", "id-only", "full-resource"):
        raise bad_request("content must be empty, id-only or full-resource", "content")
    since = _int(request, "eventsSinceNumber") or 1
    until = _int(request, "eventsUntilNumber")
    limit = services.max_page_size
    events = await services.events.events_of(
        services.store.pool, id, since, until, limit, content == "full-resource"
    )
    if not ctx.trusted and content != "empty":
        # The events were chosen by the subscriber's access; the caller sees of them what its
        # own token may read now.
        allowed = await readable(services, ctx, [(e.resource_type, e.resource_id) for e in events])
        events = [e for e in events if (e.resource_type, e.resource_id) in allowed]
    bundle = notification_bundle(
        ctx.base_url,
        id,
        row["topic"],
        row["status"],
        "query-event",
        row["events"],
        events,
        content,
        Masking.of(ctx, services.protected_identity_units),
    )
    return respond(request, ctx, Outcome(200, body=bundle))


async def subscription_deliveries(request: Request) -> Response:
    """`GET Subscription/{id}/$deliveries?_count=n`: the latest delivery attempts, newest
    first, each with its kind, the event numbers it carried, the HTTP status, latency and
    error."""
    ctx = _rest().context(request)
    services = _services(request)
    id = request.path_params["id"]
    await check_read(services, ctx, SUBSCRIPTION, id)
    count = min(_int(request, "_count") or 50, services.max_page_size)
    attempts = await services.events.attempts_of(services.store.pool, id, count)
    parameters = []
    for a in attempts:
        parts: list[dict[str, Any]] = [
            {"name": "time", "valueInstant": format_instant(a["at"])},
            {"name": "type", "valueCode": a["kind"]},
            {"name": "outcome", "valueCode": "success" if a["error"] is None else "failure"},
            {"name": "latency", "valueDecimal": round(a["latency_ms"], 3)},
        ]
        if a["first_number"] is not None:
            parts.append({"name": "first-event-number", "valueString": str(a["first_number"])})
            parts.append({"name": "last-event-number", "valueString": str(a["last_number"])})
        if a["http_status"] is not None:
            parts.append({"name": "http-status", "valueInteger": a["http_status"]})
        if a["error"] is not None:
            parts.append({"name": "error", "valueString": a["error"]})
        parameters.append({"name": "attempt", "part": parts})
    return respond(
        request, ctx, Outcome(200, body={"resourceType": "Parameters", "parameter": parameters})
    )


# -- websockets (channels.html#websockets)


def _tokens(request_or_ws: Request | WebSocket) -> dict[str, tuple[float, frozenset[str]]]:
    state = request_or_ws.app.state
    tokens: dict[str, tuple[float, frozenset[str]]] | None = getattr(state, "ws_tokens", None)
    if tokens is None:
        tokens = state.ws_tokens = {}
    now = time.monotonic()
    for token in [t for t, (expires, _) in tokens.items() if expires < now]:
        del tokens[token]
    return tokens


async def ws_binding_token(request: Request) -> Response:
    """`$get-ws-binding-token` on Subscription or Subscription/{id}: a short-lived token a
    websocket client sends (`bind-with-token <token>`) to receive the notifications of the
    websocket Subscriptions it names, which the caller must be able to read."""
    ctx = _rest().context(request)
    services = _services(request)
    id = request.path_params.get("id")
    ids = [id] if id else [i for v in request.query_params.getlist("id") for i in v.split(",")]
    if not ids:
        raise bad_request("Name the Subscription(s) with id=…", "id")
    for each in ids:
        await check_read(services, ctx, SUBSCRIPTION, each)
    rows = await services.events.rows(services.store.pool, ids)
    if len(rows) != len(set(ids)) or any(r["channel"] != "websocket" for r in rows):
        raise bad_request("Every Subscription named must exist and use the websocket channel")
    token = secrets.token_urlsafe(32)
    _tokens(request)[token] = (time.monotonic() + WS_TOKEN_SECONDS, frozenset(ids))
    expires = datetime.now(UTC) + timedelta(seconds=WS_TOKEN_SECONDS)
    ws_url = ctx.base_url.replace("https://", "wss://").replace("http://", "ws://")
    parameters = [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": format_instant(expires)},
        *({"name": "subscription", "valueString": i} for i in ids),
        {"name": "websocket-url", "valueUrl": f"{ws_url}/Subscription/$websocket"},
    ]
    return respond(
        request, ctx, Outcome(200, body={"resourceType": "Parameters", "parameter": parameters})
    )


async def websocket(ws: WebSocket) -> None:
    """The websocket channel: after `bind-with-token <token>`, notification Bundles as text."""
    await ws.accept()
    services: Services = ws.app.state.services
    bound: list[str] = []

    async def send(text: str) -> None:
        await ws.send_text(text)

    try:
        while True:
            message = await ws.receive_text()
            command, _, token = message.strip().partition(" ")
            found = _tokens(ws).pop(token.strip(), None) if command == "bind-with-token" else None
            if found is None:
                await ws.send_text('{"error": "send bind-with-token <token>"}')
                continue
            for id in sorted(found[1]):
                services.events.websockets.bind(id, send)
                bound.append(id)
            services.events.wake()
    except WebSocketDisconnect:
        pass
    finally:
        for id in bound:
            services.events.websockets.unbind(id, send)


def subscription_routes() -> list[Route]:
    # The websocket route is not a `Route`, but the Mount that takes these lists takes any.
    websocket_route = cast(Route, WebSocketRoute("/Subscription/$websocket", websocket))
    return [
        Route("/Subscription", create_subscription, methods=["POST"]),
        Route("/Subscription/$status", subscription_status, methods=["GET"]),
        Route("/Subscription/$get-ws-binding-token", ws_binding_token, methods=["GET", "POST"]),
        websocket_route,
        Route("/Subscription/{id}", change_subscription, methods=["PUT", "PATCH"]),
        Route("/Subscription/{id}/$status", subscription_status, methods=["GET"]),
        Route("/Subscription/{id}/$events", subscription_events, methods=["GET"]),
        Route("/Subscription/{id}/$deliveries", subscription_deliveries, methods=["GET"]),
        Route(
            "/Subscription/{id}/$get-ws-binding-token", ws_binding_token, methods=["GET", "POST"]
        ),
    ]
