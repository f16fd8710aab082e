"""The dispatcher: an asyncio task per API node that turns the outbox into deliveries.

1. Sequence (flode.events.sequencer): number the committed outbox rows.
2. Match (flode.events.matching): give each sequenced event its number in every subscription
   it is for; advances the `match` cursor in the same transaction.
3. Publish: hand every sequenced event to the event bus (flode.events.bridge), if configured;
   the `nats` cursor advances after the bus acknowledged.
4. Deliver (flode.events.delivery): each subscription with something to send.
5. Prune (flode.events.retention): now and then, what the retention lets go.

Steps 1–3 run on one node at a time (transaction-scoped advisory locks: another node skips
them), step 4 per subscription on the node that holds its lease. Every node wakes on
LISTEN/NOTIFY (`flode_outbox` from the writing transactions, `flode_subscription` when events
were matched) and polls every second besides, because the tables, not the notifications, are
the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

import asyncpg
import structlog

from flode.events import retention, sequencer
from flode.events.bridge import Publisher
from flode.events.channels import WebSockets
from flode.events.delivery import Deliverer
from flode.events.endpoints import EndpointPolicy
from flode.events.matching import Active, Matcher
from flode.events.outbox import Event, events_after
from flode.events.settings import Settings
from flode.events.topic_store import TopicStore
from flode.events.topics import Topics
from flode.events.versions import Conn
from flode.interactions.services import Services

log = structlog.get_logger(__name__)

NATS_LOCK = 0x464C4F44454E54  # "FLODENT"
MAX_DELIVERIES = 32
CLOSE_SECONDS = 10.0


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    def __init__(
        self,
        services: Services,
        topics: Topics,
        endpoints: EndpointPolicy,
        settings: Settings | None = None,
        publisher: Publisher | None = None,
        websockets: WebSockets | None = None,
        node: str | None = None,
        store: TopicStore | None = None,
    ) -> None:
        self.services = services
        self.pool: asyncpg.Pool = services.store.pool
        self.settings = settings or Settings()
        self.publisher = publisher
        self.node = node or node_name()
        # The topics stored, read into `topics` (shared with the process's other users).
        self.topic_store = store or TopicStore(services, topics)
        self.matcher = Matcher(services, self.topic_store, endpoints)
        self.websockets = websockets or WebSockets()
        self.deliverer = Deliverer(
            services, self.topic_store, endpoints, self.settings, self.node, self.websockets
        )
        self._outbox = asyncio.Event()
        self._subscriptions = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._listener: asyncpg.pool.PoolConnectionProxy | None = None
        self._matched_to: int | None = None
        self._dirty = False
        self._closed = False

    # -- life cycle

    async def start(self) -> None:
        listener = await self.pool.acquire()
        await listener.add_listener("flode_outbox", self._notified)
        await listener.add_listener("flode_subscription", self._notified)
        self._listener = listener
        self._tasks = [
            self._spawn(self._pipeline, "events pipeline"),
            self._spawn(self._deliveries, "events delivery"),
            self._spawn(self._retention, "events retention"),
        ]
        self.wake()

    def _spawn(
        self, work: Callable[[], Coroutine[Any, Any, None]], name: str
    ) -> asyncio.Task[None]:
        return asyncio.create_task(work(), name=name)

    async def close(self) -> None:
        """Stop at once: what was not acknowledged is delivered again after a restart."""
        if self._closed:
            return
        self._closed = True
        tasks = self._tasks + list(self._serving.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_SECONDS)
            if pending:
                log.warning("events tasks did not stop in time", tasks=len(pending))
        self._tasks = []
        self._serving.clear()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await listener.remove_listener("flode_outbox", self._notified)
                await listener.remove_listener("flode_subscription", self._notified)
                await listener.execute("UNLISTEN *")  # the pool's reset does not
            await self.pool.release(listener)
        await self.deliverer.close()
        if self.publisher is not None:
            await self.publisher.close()

    def wake(self) -> None:
        """Look at the outbox and the subscriptions now (e.g. after a Subscription write)."""
        self.matcher.invalidate()
        self._outbox.set()
        self._poke()

    def _poke(self) -> None:
        self._dirty = True
        self._subscriptions.set()

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if channel == "flode_outbox":
            self._outbox.set()
        else:
            self._poke()

    async def _wait(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.settings.poll_seconds)
        event.clear()

    # -- sequencing, matching, publishing

    async def _pipeline(self) -> None:
        while True:
            await self._wait(self._outbox)
            try:
                while await self.run_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("events pipeline failed; retrying")

    async def run_once(self) -> bool:
        """One round of sequencing, matching and publishing; True if there is more to do."""
        async with self.pool.acquire() as conn:
            # One transaction: the events numbered are matched before it commits.
            async with conn.transaction():
                sequenced = await sequencer.sequence(conn, self.settings.batch)
                matched, notify = await self._match(conn)
            for id in notify:  # no need to wait for the notification to come back
                self._start(id)
            published = await self._publish(conn) if self.publisher is not None else 0
        # Another round at once only if a step had more than one batch to do.
        return max(sequenced, matched, published) >= self.settings.batch

    async def _match(self, conn: Conn) -> tuple[int, list[str]]:
        """Match the next sequenced events; (how many, the subscriptions that got some)."""
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", sequencer.MATCH_LOCK):
            return 0, []
        position = await conn.fetchval(
            "SELECT position FROM event_cursor WHERE name = 'match' FOR UPDATE"
        )
        if position != self._matched_to:
            self.matcher.invalidate()  # another node matched since: its Subscriptions may differ
        events = await events_after(conn, position, self.settings.batch)
        if not events:
            self._matched_to = position
            return 0, []
        found = await self._match_batch(conn, events)
        for id, (_, matched) in found.items():
            last = await conn.fetchval(
                "UPDATE subscription SET events = events + $2 WHERE id = $1 RETURNING events",
                id,
                len(matched),
            )
            if last is None:
                continue
            first = last - len(matched) + 1
            await conn.execute(
                """INSERT INTO subscription_event (subscription_id, number, event, resource_type,
                   resource_id, version, action, occurred)
                   SELECT $1, n, e, t, i, v, a, o FROM unnest($2::bigint[], $3::bigint[],
                   $4::text[], $5::text[], $6::integer[], $7::text[], $8::timestamptz[])
                   AS u (n, e, t, i, v, a, o)""",
                id,
                list(range(first, last + 1)),
                [e.event for e in matched],
                [e.resource_type for e in matched],
                [e.resource_id for e in matched],
                [e.version for e in matched],
                [e.action for e in matched],
                [e.occurred for e in matched],
            )
        await conn.execute(
            "UPDATE event_cursor SET position = $1 WHERE name = 'match'", events[-1].event
        )
        if found:
            await conn.execute("SELECT pg_notify('flode_subscription', '')")
        self._matched_to = events[-1].event
        return len(events), list(found)

    async def _match_batch(
        self, conn: Conn, events: list[Event]
    ) -> dict[str, tuple[Active, list[Event]]]:
        """The events of each subscription. The batch is matched under one savepoint; if an
        event fails, the batch is matched again one event at a time, and only that event
        goes to no one."""
        for isolated in (False, True):
            found: dict[str, tuple[Active, list[Event]]] = {}
            try:
                async with conn.transaction():
                    concerned = await self.matcher.concerned(conn, events)
                    await self.matcher.prefetch(conn, concerned)
                    for event in concerned:
                        matched = (
                            await self._match_event(conn, event)
                            if isolated
                            else await self.matcher.match(conn, event)
                        )
                        for subscription in matched:
                            entry = found.setdefault(subscription.spec.id, (subscription, []))
                            entry[1].append(event)
                return found
            except asyncio.CancelledError:
                raise
            except Exception:
                if isolated:
                    raise
                self.matcher.invalidate()
        return {}

    async def _match_event(self, conn: Conn, event: Event) -> list[Active]:
        """The subscriptions of one event; an event that cannot be evaluated (a criterion the
        database refuses) goes to none of them, and the feed moves on."""
        try:
            async with conn.transaction():
                return await self.matcher.match(conn, event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("event could not be matched", event=event.event, focus=event.reference)
            return []

    async def _publish(self, conn: Conn) -> int:
        assert self.publisher is not None
        async with conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", NATS_LOCK):
                return 0
            position = await conn.fetchval(
                "SELECT position FROM event_cursor WHERE name = 'nats' FOR UPDATE"
            )
            events = await events_after(conn, position, self.settings.batch)
            if not events:
                return 0
            await self.publisher.publish(events)
            await conn.execute(
                "UPDATE event_cursor SET position = $1 WHERE name = 'nats'", events[-1].event
            )
        return len(events)

    # -- retention

    async def _retention(self) -> None:
        """Prune a minute after starting (sooner if pruning is more frequent), then every
        `prune_seconds`; another node pruning meanwhile makes this round a no-op."""
        await asyncio.sleep(min(60.0, self.settings.prune_seconds))
        while True:
            try:
                await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning events failed; retrying later")
            await asyncio.sleep(self.settings.prune_seconds)

    async def prune(self) -> retention.Pruned | None:
        async with self.pool.acquire() as conn:
            try:
                pruned = await retention.prune(
                    conn, self.settings.retention_days, publishing=self.publisher is not None
                )
            except BaseException:
                # It may still hold the session lock: it must not go back to serve requests.
                conn.terminate()
                raise
        if pruned is not None and any(pruned.removed.values()):
            log.info("events pruned", before=pruned.cutoff.isoformat(), **pruned.removed)
        return pruned

    # -- delivery

    async def _deliveries(self) -> None:
        while True:
            await self._wait(self._subscriptions)
            try:
                await self._start_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("looking for due subscriptions failed; retrying")

    async def _start_due(self) -> None:
        self._dirty = False
        rows = await self.pool.fetch(
            """SELECT id FROM subscription
               WHERE status <> 'off' AND next_attempt <= now()
               AND (lease_until IS NULL OR lease_until < now() OR lease_owner = $1)
               AND (channel <> 'websocket' OR id = ANY($3::text[]))
               AND (status IN ('requested', 'error') OR delivered < events
                    OR (heartbeat IS NOT NULL
                        AND coalesce(last_sent, created) + heartbeat * interval '1 second'
                            <= now()))
               ORDER BY next_attempt LIMIT $2""",
            self.node,
            MAX_DELIVERIES,
            list(self.websockets.bound),
        )
        for row in rows:
            self._start(row["id"])

    def _start(self, id: str) -> None:
        """Deliver to the subscription, unless this node is doing so already."""
        if id in self._serving:
            self._dirty = True  # it may just be finishing: look again when it has
            return
        if len(self._serving) >= MAX_DELIVERIES:
            self._poke()
            return
        task = asyncio.create_task(self._serve(id), name=f"deliver {id}")
        self._serving[id] = task
        task.add_done_callback(partial(self._served, id))

    def _served(self, id: str, _: asyncio.Task[None]) -> None:
        self._serving.pop(id, None)
        if self._dirty:  # what was matched meanwhile is not left to the next poll
            self._subscriptions.set()

    async def _serve(self, id: str) -> None:
        try:
            while await self.deliverer.step(id):
                pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering a subscription failed", subscription=id)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.deliverer.release(id))
