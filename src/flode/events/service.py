"""What the rest of Flöde sees of events: the topics offered (kept equal to those stored, see
flode.events.topic_store), the check and bookkeeping of Subscription writes, the reads behind
`$status`, `$events` and `$deliveries`, and the dispatcher's life cycle (started and stopped
by the composition root, flode.app)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
import structlog

from flode.context import RequestContext
from flode.events.channels import WebSockets
from flode.events.endpoints import DEFAULT_ALLOWED, EndpointPolicy
from flode.events.notifications import Notified
from flode.events.settings import Settings
from flode.events.subscription import Spec, read_subscription
from flode.events.topic_store import TopicStore
from flode.events.topics import Topics
from flode.fhir.errors import invalid_resource
from flode.store.search import SearchCompiler

if TYPE_CHECKING:
    from flode.events.dispatcher import Dispatcher
    from flode.interactions.services import Services

Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
log = structlog.get_logger(__name__)


def owner_of(ctx: RequestContext) -> dict[str, Any]:
    """The request context a Subscription keeps: every notification is held to it."""
    found = asdict(ctx)
    found["scopes"] = sorted(ctx.scopes)
    return found


def context_of(saved: Mapping[str, Any]) -> RequestContext:
    """The kept request context again (fields this version does not know are left out)."""
    names = {f.name for f in fields(RequestContext)}
    values: dict[str, Any] = {"request_id": "subscription", "base_url": ""}
    values.update((k, v) for k, v in saved.items() if k in names)
    values["scopes"] = frozenset(values.get("scopes", ()))
    return RequestContext(**values)


@dataclass
class Events:
    allowed_hosts: Sequence[str] = DEFAULT_ALLOWED
    settings: Settings = field(default_factory=Settings)
    nats_url: str | None = None
    nats_stream: str = "FLODE"
    dispatch: bool = True
    """Run a dispatcher in this process (off: another process or node delivers)."""
    topics: Topics = field(default_factory=Topics.builtin)
    """The shipped topics until `start` reads those stored."""
    websockets: WebSockets = field(default_factory=WebSockets)
    dispatcher: Dispatcher | None = None
    endpoints: EndpointPolicy = field(init=False)
    store: TopicStore | None = field(default=None, init=False)
    _watch: asyncio.Task[None] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.endpoints = EndpointPolicy(self.allowed_hosts)

    async def start(self, services: Services) -> None:
        """Read the stored topics and keep watching them; run the dispatcher if this process
        dispatches."""
        self.store = TopicStore(services, self.topics)
        await self.store.refresh()
        self._watch = asyncio.create_task(self._watch_topics(), name="events topics")
        if not self.dispatch:
            return
        from flode.events.bridge import JetStreamPublisher, Publisher
        from flode.events.dispatcher import Dispatcher

        publisher: Publisher | None = None
        if self.nats_url:
            publisher = await JetStreamPublisher.connect(self.nats_url, self.nats_stream)
        self.dispatcher = Dispatcher(
            services,
            self.topics,
            self.endpoints,
            self.settings,
            publisher=publisher,
            websockets=self.websockets,
            store=self.store,
        )
        await self.dispatcher.start()

    async def close(self) -> None:
        if self._watch is not None:
            watch, self._watch = self._watch, None
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if self.dispatcher is not None:
            dispatcher, self.dispatcher = self.dispatcher, None
            await dispatcher.close()

    def wake(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    # -- topics

    async def _watch_topics(self) -> None:
        """Topics written on another server take effect here within `topics_seconds`."""
        while True:
            await asyncio.sleep(self.settings.topics_seconds)
            try:
                await self.topics_written()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep watching: a passing database error must not stop it
                log.warning("reading the topics failed", error=str(exc) or type(exc).__name__)

    async def read_topics(self, services: Services) -> None:
        """Read the stored topics into `topics`, without watching them or dispatching: for a
        process that writes but serves no events (`flode load`, `$import`). The shipped topics
        no server has stored yet stay offered: a server stores them when it starts."""
        if self.store is None:
            self.store = TopicStore(services, self.topics, unpublished=True)
        await self.store.refresh()

    async def topics_written(self) -> None:
        """After a write of a Basic (or to look for one): what is stored is offered from now
        on, and the dispatcher reads its Subscriptions again."""
        if self.store is not None and await self.store.refresh():
            self.wake()

    # -- Subscription writes

    def check(self, resource: Mapping[str, Any], compiler: SearchCompiler) -> Spec:
        """The Subscription's request; 422 with every reason it cannot be served."""
        spec, issues = read_subscription(resource, self.topics, compiler, self.endpoints)
        if spec is None:
            raise invalid_resource(issues)
        return spec

    async def adopt(
        self, conn: Conn, ctx: RequestContext, id: str, version: int, spec: Spec
    ) -> None:
        """Record, in the Subscription write's own transaction, who wrote it (the access its
        notifications are held to) and what it asks for. A write other than `off` starts
        over with a handshake."""
        await conn.execute(
            """INSERT INTO subscription (id, version, owner, topic, status, channel, heartbeat)
               VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)
               ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version,
                 owner = EXCLUDED.owner, topic = EXCLUDED.topic, status = EXCLUDED.status,
                 channel = EXCLUDED.channel, heartbeat = EXCLUDED.heartbeat, failures = 0,
                 next_attempt = now(), error = NULL,
                 -- events of a topic it no longer subscribes to are not sent
                 delivered = CASE WHEN subscription.topic = EXCLUDED.topic
                             THEN subscription.delivered ELSE subscription.events END""",
            id,
            version,
            orjson.dumps(owner_of(ctx)).decode(),
            spec.topic.url,
            "off" if spec.status == "off" else "requested",
            spec.channel,
            spec.heartbeat,
        )

    async def refresh(self, pool: asyncpg.Pool) -> None:
        """After Subscription writes of any kind: deleted ones are off; look at all now."""
        await pool.execute(
            """UPDATE subscription s SET status = 'off' FROM resource r
               WHERE r.resource_type = 'Subscription' AND r.id = s.id AND r.deleted
               AND s.status <> 'off'"""
        )
        await pool.execute("SELECT pg_notify('flode_subscription', '')")
        self.wake()

    # -- reads

    async def rows(self, pool: asyncpg.Pool, ids: Sequence[str] | None) -> list[asyncpg.Record]:
        return list(
            await pool.fetch(
                """SELECT s.*, r.deleted FROM subscription s
                   JOIN resource r ON r.resource_type = 'Subscription' AND r.id = s.id
                   WHERE ($1::text[] IS NULL OR s.id = ANY($1)) ORDER BY s.id""",
                None if ids is None else list(ids),
            )
        )

    async def events_of(
        self, pool: asyncpg.Pool, id: str, since: int, until: int | None, limit: int, full: bool
    ) -> list[Notified]:
        rows = await pool.fetch(
            """SELECT e.number, e.resource_type, e.resource_id, e.version, e.action, e.occurred,
                      CASE WHEN $5 THEN v.content END AS content, v.method
               FROM subscription_event e
               LEFT JOIN resource r ON r.resource_type = e.resource_type AND r.id = e.resource_id
               LEFT JOIN resource_version v ON v.resource_pk = r.pk AND v.version = e.version
               WHERE e.subscription_id = $1 AND e.number >= $2
               AND ($3::bigint IS NULL OR e.number <= $3)
               ORDER BY e.number LIMIT $4""",
            id,
            since,
            until,
            limit,
            full,
        )
        return [Notified.of(r) for r in rows]

    async def attempts_of(self, pool: asyncpg.Pool, id: str, limit: int) -> list[asyncpg.Record]:
        return list(
            await pool.fetch(
                """SELECT * FROM subscription_attempt WHERE subscription_id = $1
                   ORDER BY id DESC LIMIT $2""",
                id,
                limit,
            )
        )
