"""Delivering one subscription's notifications (R4 Subscriptions Backport IG, "Channels" and
"Errors"): the handshake that activates it, its events in order at most `max-count` to a
Bundle, heartbeats when nothing else was sent, retries with exponential backoff, the `error`
status after repeated failures and the way back to `active` once a delivery succeeds.

A node delivers to a subscription while it holds the subscription's lease (renewed with every
step), so several API nodes never deliver the same subscription at once; `delivered` moves
only after the endpoint acknowledged, so a crash between the two sends the same events, with
the same event numbers, again (at least once).

Each step costs one statement besides the sending: the one that claims the subscription (or
records the previous step's success and renews the lease) also reads the events to send next,
as many and with as much content as the subscription asked for the last time it was read.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import orjson
import structlog

from flode.access.protected import Masking
from flode.events.channels import Attempt, RestHook, WebSockets
from flode.events.endpoints import EndpointPolicy
from flode.events.notifications import Notified, notification_bundle
from flode.events.service import context_of
from flode.events.settings import Settings
from flode.events.status import write_status
from flode.events.subscription import Spec, read_subscription
from flode.events.topic_store import TopicStore, no_longer_offered
from flode.fhir import json
from flode.fhir.errors import Issue
from flode.interactions.services import Services
from flode.store.repository import Transaction

log = structlog.get_logger(__name__)

KEEP_ATTEMPTS = 200


Shape = tuple[int, bool]
"""How a subscription's events are read: at most this many, with their content or not."""
FIRST_SHAPE: Shape = (100, False)
"""Before a subscription was read: the default max count, `id-only`."""


@dataclass(frozen=True, slots=True)
class State:
    row: asyncpg.Record
    spec: Spec | None
    problem: str | None
    base_url: str
    masking: Masking
    """What the subscriber (the Subscription's owner) sees of patients with protected
    identity: decided from the owner's kept context each time, never from a request's."""
    events: list[Notified]
    """The next events to send, read with the claim in `shape`."""
    shape: Shape

    @property
    def id(self) -> str:
        id: str = self.row["id"]
        return id


def shape_of(spec: Spec) -> Shape:
    return spec.max_count, spec.content == "full-resource"


# The subscription row as claimed (or as the previous step left it) with its Subscription
# resource, then its next events: one row per event (the resource's content on the first
# only), or one row without an event. $4: how many events at most; $5: with their content.
_STATE = """
    SELECT c.*, r.version AS resource_version, r.deleted, now() AS now,
        CASE WHEN coalesce(n.rank, 1) = 1 THEN v.content END AS content,
        n.number AS event_number, n.resource_type AS event_type, n.resource_id AS event_id,
        n.version AS event_version, n.action AS event_action, n.occurred AS event_occurred,
        n.content AS event_content, n.method AS event_method
    FROM claimed c
    LEFT JOIN resource r ON r.resource_type = 'Subscription' AND r.id = c.id
    LEFT JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
    LEFT JOIN LATERAL (
        SELECT e.number, e.resource_type, e.resource_id, e.version, e.action, e.occurred,
            CASE WHEN $5 THEN ev.content END AS content, ev.method,
            row_number() OVER (ORDER BY e.number) AS rank
        FROM subscription_event e
        LEFT JOIN resource er ON er.resource_type = e.resource_type AND er.id = e.resource_id
        LEFT JOIN resource_version ev ON ev.resource_pk = er.pk AND ev.version = e.version
        WHERE e.subscription_id = c.id AND e.number > c.delivered
        ORDER BY e.number LIMIT $4) n ON true
    ORDER BY n.number"""

_CLAIM = (
    """
    WITH claimed AS (
        UPDATE subscription SET lease_owner = $2,
            lease_until = now() + $3 * interval '1 second'
        WHERE id = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
        RETURNING *)"""
    + _STATE
)

# A success recorded, `delivered` moved on and the lease renewed, in one statement that also
# reads the state of the next step (nothing when the lease was lost meanwhile).
_SUCCEEDED = (
    """
    WITH attempt AS (
        INSERT INTO subscription_attempt (subscription_id, kind, first_number, last_number,
            http_status, latency_ms) VALUES ($1, $6, $7, $8, $9, $10)),
    claimed AS (
        UPDATE subscription SET delivered = greatest(delivered, $11), failures = 0,
            last_sent = now(), next_attempt = now(),
            lease_until = now() + $3 * interval '1 second'
        WHERE id = $1 AND lease_owner = $2
        RETURNING *)"""
    + _STATE
)


def _events_of(rows: list[asyncpg.Record]) -> list[Notified]:
    return [
        Notified(
            r["event_number"],
            r["event_type"],
            r["event_id"],
            r["event_version"],
            r["event_action"],
            r["event_occurred"],
            r["event_content"],
            r["event_method"],
        )
        for r in rows
        if r["event_number"] is not None
    ]


class Deliverer:
    def __init__(
        self,
        services: Services,
        store: TopicStore,
        endpoints: EndpointPolicy,
        settings: Settings,
        node: str,
        websockets: WebSockets,
    ) -> None:
        self.services = services
        self.pool = services.store.pool
        self.store = store
        self.topics = store.topics
        self.endpoints = endpoints
        self.settings = settings
        self.node = node
        self.rest_hook = RestHook(endpoints)
        self.websockets = websockets
        self._specs: dict[tuple[str, int, int], tuple[Spec | None, list[Issue]]] = {}
        self._shapes: dict[str, Shape] = {}

    async def close(self) -> None:
        await self.rest_hook.close()

    async def _claim(self, id: str) -> State | None:
        shape = self._shapes.get(id, FIRST_SHAPE)
        rows = await self.pool.fetch(_CLAIM, id, self.node, self.settings.lease_seconds, *shape)
        return await self._state(rows, shape)

    async def _state(self, rows: list[asyncpg.Record], shape: Shape) -> State | None:
        """The subscription as a claim (or a success) read it; None when it is not ours."""
        if not rows:
            return None
        row = rows[0]
        problem = None
        spec = None
        if row["content"] is None or row["deleted"]:
            problem = "deleted"
        elif row["resource_version"] != row["version"]:
            problem = (
                "the stored Subscription was written without being checked (by `flode load "
                "--fast` or `$import`); write it again with PUT Subscription/{id}"
            )
        else:
            spec, issues = self._spec(row)
            if spec is None and self.topics.get(row["topic"]) is None:
                # A topic written on another server a moment ago, or one no longer offered.
                if await self.store.refresh():
                    spec, issues = self._spec(row)
                if spec is None and self.topics.get(row["topic"]) is None:
                    issues = [Issue("error", "not-found", no_longer_offered(row["topic"]))]
            if spec is None:
                problem = "; ".join(i.diagnostics for i in issues)
        owner = context_of(orjson.loads(row["owner"]))
        masking = Masking.of(owner, self.services.protected_identity_units)
        if spec is not None:
            if len(self._shapes) > 10_000:
                self._shapes.clear()
            self._shapes[row["id"]] = shape_of(spec)
        return State(row, spec, problem, owner.base_url, masking, _events_of(rows), shape)

    def _spec(self, row: asyncpg.Record) -> tuple[Spec | None, list[Issue]]:
        """The stored Subscription read against the topics offered now (kept per version)."""
        key = (row["id"], row["version"], self.topics.generation)
        if key not in self._specs:
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[key] = read_subscription(
                json.loads(row["content"]), self.topics, self.services.search, self.endpoints
            )
        return self._specs[key]

    async def release(self, id: str) -> None:
        await self.pool.execute(
            """UPDATE subscription SET lease_owner = NULL, lease_until = NULL
               WHERE id = $1 AND lease_owner = $2""",
            id,
            self.node,
        )

    async def serve(self, id: str) -> None:
        """Do what the subscription needs, step after step, until there is nothing (now)."""
        state = await self._claim(id)
        while state is not None:
            state = await self._step(state)

    async def _step(self, state: State) -> State | None:
        """Do the next thing; the state for the step after it, or None when there is
        nothing (now)."""
        id, row, spec = state.id, state.row, state.spec
        if row["status"] == "off":
            return None
        if state.problem == "deleted":
            await self.pool.execute("UPDATE subscription SET status = 'off' WHERE id = $1", id)
            return None
        if spec is None:
            await self.pool.execute(
                """UPDATE subscription SET status = 'error', error = $2,
                   next_attempt = now() + $3 * interval '1 second' WHERE id = $1""",
                id,
                state.problem,
                self.settings.retry_max_seconds,
            )
            return None
        now: datetime = row["now"]
        if spec.end is not None and spec.end <= now:
            await self._set_status(state, "off", None)
            return None
        if row["next_attempt"] > now:
            return None
        if spec.channel == "websocket" and not self.websockets.has(id):
            return None
        if row["status"] == "requested" or (
            row["status"] == "error" and row["delivered"] >= row["events"]
        ):
            return await self._send(state, "handshake", [])
        if row["delivered"] < row["events"]:
            events = state.events
            if state.shape != shape_of(spec) or not events:
                events = await self._events(state, spec)
            return await self._send(state, "event-notification", events)
        heartbeat = row["heartbeat"]
        if heartbeat is not None and row["status"] == "active":
            last = row["last_sent"] or row["created"]
            if last + timedelta(seconds=heartbeat) <= now:
                return await self._send(state, "heartbeat", [])
        return None

    async def _events(self, state: State, spec: Spec) -> list[Notified]:
        rows = await self.pool.fetch(
            """SELECT e.number, e.resource_type, e.resource_id, e.version, e.action, e.occurred,
                      CASE WHEN $4 THEN v.content END AS content, v.method
               FROM subscription_event e
               LEFT JOIN resource r ON r.resource_type = e.resource_type AND r.id = e.resource_id
               LEFT JOIN resource_version v ON v.resource_pk = r.pk AND v.version = e.version
               WHERE e.subscription_id = $1 AND e.number > $2
               ORDER BY e.number LIMIT $3""",
            state.id,
            state.row["delivered"],
            spec.max_count,
            spec.content == "full-resource",
        )
        return [Notified.of(r) for r in rows]

    async def _send(self, state: State, kind: str, events: list[Notified]) -> State | None:
        """Send, and record what came of it; the next state after a success."""
        spec = state.spec
        assert spec is not None
        row = state.row
        status = "active" if kind in ("event-notification", "heartbeat") else row["status"]
        bundle = notification_bundle(
            state.base_url,
            state.id,
            spec.topic.url,
            status,
            kind,
            row["events"],
            events,
            spec.content,
            state.masking,
        )
        body = json.dumps(bundle)
        if spec.channel == "websocket":
            attempt = await self.websockets.send(state.id, body)
        else:
            attempt = await self.rest_hook.send(spec, body)
        if attempt.ok:
            return await self._succeeded(state, kind, events, attempt)
        await self._record(state, kind, events, attempt)
        await self._failed(state, attempt)
        return None

    async def _record(
        self, state: State, kind: str, events: list[Notified], attempt: Attempt
    ) -> None:
        await self.pool.execute(
            """INSERT INTO subscription_attempt (subscription_id, kind, first_number,
               last_number, http_status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            state.id,
            kind,
            events[0].number if events else None,
            events[-1].number if events else None,
            attempt.http_status,
            attempt.latency_ms,
            attempt.error,
        )
        await self._prune(state)

    async def _prune(self, state: State) -> None:
        """Now and then, keep only the latest attempts of the subscription."""
        if random.random() < 0.02:
            await self.pool.execute(
                """DELETE FROM subscription_attempt WHERE subscription_id = $1 AND id <
                   (SELECT min(id) FROM (SELECT id FROM subscription_attempt
                    WHERE subscription_id = $1 ORDER BY id DESC LIMIT $2) AS kept)""",
                state.id,
                KEEP_ATTEMPTS,
            )

    async def _succeeded(
        self, state: State, kind: str, events: list[Notified], attempt: Attempt
    ) -> State | None:
        """Record the attempt, move `delivered` on and renew the lease, in one statement; the
        state for the next step."""
        shape = self._shapes.get(state.id, state.shape)
        rows = await self.pool.fetch(
            _SUCCEEDED,
            state.id,
            self.node,
            self.settings.lease_seconds,
            *shape,
            kind,
            events[0].number if events else None,
            events[-1].number if events else None,
            attempt.http_status,
            attempt.latency_ms,
            events[-1].number if events else state.row["delivered"],
        )
        await self._prune(state)
        if state.row["status"] != "active":
            await self._set_status(state, "active", None)
            return await self._claim(state.id)  # the row changed with the status
        return await self._state(rows, shape)

    async def _failed(self, state: State, attempt: Attempt) -> None:
        failures = state.row["failures"] + 1
        delay = min(
            self.settings.retry_max_seconds,
            self.settings.retry_base_seconds * 2 ** (failures - 1),
        )
        delay *= random.uniform(0.8, 1.0)  # jitter: receivers that come back are not stormed
        await self.pool.execute(
            """UPDATE subscription SET failures = $2,
               next_attempt = now() + $3 * interval '1 second' WHERE id = $1""",
            state.id,
            failures,
            delay,
        )
        log.info(
            "subscription delivery failed",
            subscription=state.id,
            failures=failures,
            retry_in=round(delay, 2),
            error=attempt.error,
        )
        handshake = state.row["status"] == "requested"
        if state.row["status"] != "error" and (handshake or failures >= self.settings.error_after):
            await self._set_status(state, "error", attempt.error)

    async def _set_status(self, state: State, status: str, error: str | None) -> None:
        """Write the status into the Subscription resource (a new version, as the IG has the
        server do) and into its row, in one transaction; nothing if a client changed it since."""
        id, expected = state.id, state.row["version"]

        async def work(tx: Transaction) -> None:
            await write_status(tx, id, expected, status, error)

        await self.services.store.retrying(work)
        log.info("subscription status", subscription=id, status=status, error=error)
