"""Subscription routes (R4 Subscriptions Backport IG): the operations `$status`, `$events`,
`$deliveries` and `$get-ws-binding-token`, plus the websocket the binding token opens. Every
other interaction on Subscription resources is an ordinary FHIR route; its writes are checked
for what this server can serve and keep who wrote them (flode.events.writes).
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from flode.access import policy
from flode.access.protected import Masking
from flode.api.responses import respond
from flode.events.notifications import notification_bundle, status_parameters
from flode.events.service import Events
from flode.fhir.bundle import link
from flode.fhir.dates import format_instant
from flode.fhir.errors import bad_request, not_found
from flode.interactions.guard import check_read
from flode.interactions.outcome import Outcome
from flode.interactions.search_access import readable
from flode.interactions.services import Services

SUBSCRIPTION = "Subscription"
WS_TOKEN_SECONDS = 300
EVENTS_PAGE = 100
"""Events in a `$events` Bundle unless `_count` asks for fewer or more (at most
FLODE_MAX_COUNT)."""


def _rest() -> ModuleType:
    # The FHIR routes module splices these routes into its own list, so it is looked up
    # when a request comes, not when this module is imported.
    from flode.api import routes

    return routes


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


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
    """`GET Subscription/{id}/$events?eventsSinceNumber&eventsUntilNumber&content&_count`: the
    subscription's events again, as a notification Bundle (type `query-event`), at most
    `_count` of them (the IG names no such parameter; FHIR's own is used), with a `next` link
    that continues after the last while there are more."""
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
    count = _int(request, "_count")
    if count == 0:
        raise bad_request("_count must be at least 1", "_count")
    count = min(count or EVENTS_PAGE, services.max_page_size)
    events = await services.events.events_of(
        services.store.pool, id, since, until, count + 1, content == "full-resource"
    )
    more, events = len(events) > count, events[:count]
    rest = [] if until is None else [("eventsUntilNumber", str(until))]
    rest += [("content", content), ("_count", str(count))]
    url = f"{ctx.base_url}/Subscription/{id}/$events"
    links = [link("self", url, [("eventsSinceNumber", str(since)), *rest])]
    if more:  # the next page starts after the last event read, shown or not
        after = str(events[-1].number + 1)
        links.append(link("next", url, [("eventsSinceNumber", after), *rest]))
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
    bundle["link"] = links
    bundle["entry"] = bundle.pop("entry")  # after the links, as in every Bundle
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
        Route("/Subscription/$status", subscription_status, methods=["GET"]),
        Route("/Subscription/$get-ws-binding-token", ws_binding_token, methods=["GET", "POST"]),
        websocket_route,
        Route("/Subscription/{id}/$status", subscription_status, methods=["GET"]),
        Route("/Subscription/{id}/$events", subscription_events, methods=["GET"]),
        Route("/Subscription/{id}/$deliveries", subscription_deliveries, methods=["GET"]),
        Route(
            "/Subscription/{id}/$get-ws-binding-token", ws_binding_token, methods=["GET", "POST"]
        ),
    ]
