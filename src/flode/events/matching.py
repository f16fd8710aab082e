"""Which subscriptions an event is for: the topic's trigger (interaction and query criteria
over the previous and current version), the Subscription's filters, and the subscriber's
access — all evaluated on the versions the event is about (flode.events.versions).

An event a subscriber may not read is not theirs at all: it gets no event number, so neither
a notification nor a count reveals that it happened (DESIGN.md principle 4).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from flode.access import policy
from flode.context import RequestContext
from flode.events.endpoints import EndpointPolicy
from flode.events.outbox import Event
from flode.events.service import context_of
from flode.events.subscription import Spec, read_subscription
from flode.events.topic_store import TopicStore
from flode.events.topics import Topics, Trigger
from flode.events.versions import Conn, Predicate, VersionMatcher
from flode.fhir import json
from flode.fhir.search_query import SearchQuery, parse
from flode.interactions import search_access
from flode.interactions.services import Services
from flode.store.sql import Args

RELOAD_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Active:
    """A Subscription that takes events: its request and its owner's access."""

    spec: Spec
    owner: RequestContext
    base_url: str


async def load_active(
    conn: Conn, services: Services, topics: Topics, endpoints: EndpointPolicy
) -> list[Active]:
    """Every Subscription not `off` whose stored version is the one its row was written for,
    of a module that is not disabled (`flode module disable` stops its notifications)."""
    rows = await conn.fetch(
        """SELECT s.id, s.owner, v.content FROM subscription s
           JOIN resource r ON r.resource_type = 'Subscription' AND r.id = s.id
           JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
           LEFT JOIN auth_client c ON c.id = s.owner->>'client_id'
           WHERE s.status <> 'off' AND NOT r.deleted AND r.version = s.version
           AND (c.id IS NULL OR c.enabled)"""
    )
    found = []
    for row in rows:
        spec, _ = read_subscription(json.loads(row["content"]), topics, services.search, endpoints)
        if spec is not None:
            owner = context_of(orjson.loads(row["owner"]))
            found.append(Active(spec, owner, owner.base_url))
    return found


@dataclass(frozen=True, slots=True)
class _Stored:
    version: int
    last_updated: datetime
    content: str | None


class Matcher:
    def __init__(self, services: Services, store: TopicStore, endpoints: EndpointPolicy) -> None:
        self.services = services
        self.store = store
        self.topics = store.topics
        self.endpoints = endpoints
        self.versions = VersionMatcher(services.store.indexer)
        self._active: list[Active] | None = None
        self._cache: dict[tuple[int, int], _Stored] = {}
        self._loaded = 0.0

    def invalidate(self) -> None:
        """Read the Subscriptions again before the next event."""
        self._active = None

    async def _subscriptions(self, conn: Conn) -> list[Active]:
        # Subscription writes invalidate at once; a module disabled elsewhere within seconds.
        if self._active is None or time.monotonic() - self._loaded > RELOAD_SECONDS:
            # The topics first: a Subscription is read against the topics stored with it.
            await self.store.refresh(conn)
            self._active = await load_active(conn, self.services, self.topics, self.endpoints)
            self._loaded = time.monotonic()
        return self._active

    def _criteria(self, resource_type: str, text: str) -> Predicate:
        query = parse(_pairs(text))
        compiler = self.services.search

        def predicate(args: Args) -> str:
            compiled = compiler.compile(resource_type, query, args)
            return "false" if compiled.unknown else compiled.where

        return predicate

    def _filter(
        self, resource_type: str, queries: Sequence[SearchQuery], ctx: RequestContext
    ) -> Predicate:
        compiler = self.services.search
        access = search_access.chained(self.services, ctx)
        hidden = search_access.hidden(self.services, ctx)

        def predicate(args: Args) -> str:
            parts = []
            for query in queries:
                compiled = compiler.compile(resource_type, query, args, access, hidden)
                parts.append("false" if compiled.unknown else compiled.where)
            return " AND ".join(f"({p})" for p in parts) or "true"

        return predicate

    def _access(self, resource_type: str, ctx: RequestContext) -> Predicate | bool:
        """What `search_access.readable` decides, as a predicate on the version."""
        if ctx.trusted or policy.unrestricted(ctx, resource_type, "r"):
            return True
        if not policy.allows(ctx, resource_type, "r"):
            return False
        compiler = self.services.search

        def predicate(args: Args) -> str:
            sql = policy.restriction(compiler, ctx, resource_type, "r", args)
            return "true" if sql is None else sql

        return predicate

    async def prefetch(self, conn: Conn, events: Sequence[Event]) -> None:
        """Read, in one statement, the versions the events of a batch will be judged on."""
        wanted = [(e.resource_pk, v) for e in events for v in (e.version, e.version - 1) if v > 0]
        self._cache = {}
        if not wanted:
            return
        rows = await conn.fetch(
            """SELECT v.resource_pk, v.version, v.last_updated, v.content FROM resource_version v
               JOIN unnest($1::bigint[], $2::integer[]) AS w (pk, version)
               ON v.resource_pk = w.pk AND v.version = w.version""",
            [w[0] for w in wanted],
            [w[1] for w in wanted],
        )
        for r in rows:
            stored = _Stored(r["version"], r["last_updated"], r["content"])
            self._cache[(r["resource_pk"], r["version"])] = stored

    async def _stored(self, conn: Conn, event: Event) -> dict[int, _Stored]:
        versions = (event.version, event.version - 1)
        if all((event.resource_pk, v) in self._cache for v in versions if v > 0):
            return {
                v: self._cache[(event.resource_pk, v)]
                for v in versions
                if (event.resource_pk, v) in self._cache
            }
        rows = await conn.fetch(
            """SELECT version, last_updated, content FROM resource_version
               WHERE resource_pk = $1 AND version = ANY($2::integer[])""",
            event.resource_pk,
            list(versions),
        )
        return {r["version"]: _Stored(r["version"], r["last_updated"], r["content"]) for r in rows}

    async def _evaluate(
        self, conn: Conn, event: Event, stored: _Stored | None, predicates: list[Predicate | bool]
    ) -> list[bool]:
        """Each predicate on a stored version (all False when there is none)."""
        if stored is None or stored.content is None:
            return [p is True for p in predicates]
        pending = [p for p in predicates if not isinstance(p, bool)]
        answers = iter(
            await self.versions.evaluate(
                conn,
                event.resource_pk,
                event.resource_type,
                stored.version,
                stored.last_updated,
                stored.content,
                pending,
            )
        )
        return [p if isinstance(p, bool) else next(answers) for p in predicates]

    async def concerned(self, conn: Conn, events: Sequence[Event]) -> list[Event]:
        """The events some topic with a subscription triggers on (before criteria)."""
        if any(e.resource_type == "Basic" for e in events):
            self.invalidate()  # perhaps a topic written: the events after it are matched by it
        if any(e.resource_type == "Subscription" for e in events):
            return list(events)
        topics = {s.spec.topic.url for s in await self._subscriptions(conn)}
        return [
            e
            for e in events
            if any(
                e.action in trigger.interactions and topic.url in topics
                for topic, trigger in self.topics.triggers_for(e.resource_type)
            )
        ]

    async def match(self, conn: Conn, event: Event) -> list[Active]:
        """The subscriptions `event` is an event of."""
        if event.resource_type == "Subscription":
            self.invalidate()
            return []
        active = await self._subscriptions(conn)
        by_topic: dict[str, list[Active]] = {}
        for subscription in active:
            if subscription.spec.end is None or subscription.spec.end > event.occurred:
                by_topic.setdefault(subscription.spec.topic.url, []).append(subscription)
        triggers = [
            (topic, trigger)
            for topic, trigger in self.topics.triggers_for(event.resource_type)
            if event.action in trigger.interactions and topic.url in by_topic
        ]
        if not triggers:
            return []
        stored = await self._stored(conn, event)
        previous = stored.get(event.version - 1)
        if event.action == "create":
            previous = None
        # What filters and access are judged on: the version written, or for a deletion the
        # version it deleted.
        subject = previous if event.action == "delete" else stored.get(event.version)

        current_checks: list[Predicate | bool] = []
        previous_checks: list[Predicate | bool] = []
        for _, trigger in triggers:
            c = trigger.criteria
            if c is not None and c.current is not None and event.action != "delete":
                current_checks.append(self._criteria(event.resource_type, c.current))
            if c is not None and c.previous is not None and event.action != "create":
                previous_checks.append(self._criteria(event.resource_type, c.previous))
        candidates = [s for topic, _ in triggers for s in by_topic[topic.url]]
        candidates = list({id(s): s for s in candidates}.values())
        subject_checks: list[Predicate | bool] = []
        for subscription in candidates:
            filters = subscription.spec.filters_for(event.resource_type)
            subject_checks.append(
                self._filter(event.resource_type, [f.query for f in filters], subscription.owner)
                if filters
                else True
            )
            subject_checks.append(self._access(event.resource_type, subscription.owner))

        # One statement per version: the topics' current criteria and every candidate's
        # filters and access on the subject version, the previous criteria on the one before.
        on_subject = await self._evaluate(conn, event, subject, current_checks + subject_checks)
        current_answers = iter(on_subject[: len(current_checks)])
        subject_answers = iter(on_subject[len(current_checks) :])
        previous_answers = iter(await self._evaluate(conn, event, previous, previous_checks))

        fired: set[str] = set()
        for topic, trigger in triggers:
            if _fires(trigger, event.action, current_answers, previous_answers):
                fired.add(topic.url)
        matched = []
        for subscription in candidates:
            passes_filters, readable = next(subject_answers), next(subject_answers)
            if subscription.spec.topic.url in fired and passes_filters and readable:
                matched.append(subscription)
        return matched


def _fires(trigger: Trigger, action: str, current: Any, previous: Any) -> bool:
    """resourceTrigger: the interaction, then queryCriteria (R5 SubscriptionTopic)."""
    c = trigger.criteria
    if c is None or (c.current is None and c.previous is None):
        return True
    results = []
    if c.current is not None:
        results.append(
            c.result_for_delete == "test-passes" if action == "delete" else next(current)
        )
    if c.previous is not None:
        results.append(
            c.result_for_create == "test-passes" if action == "create" else next(previous)
        )
    return all(results) if c.require_both else any(results)


def _pairs(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text.split("?", 1)[-1], keep_blank_values=True)
