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

Latency is what a subscriber waits for, so the steps keep out of each other's way: a round
sequences and commits, then matches in a transaction of its own (with a few statements for a
whole batch), and publishing runs as a task of its own, woken as soon as a round has
sequenced, so that neither the bus nor the matching waits for the other. Each step works on
everything that is ready, up to `batch` events, so the more events arrive, the fewer rounds
per event.
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
from flode.events.outbox import EVENT_COLUMNS, Event, event_of
from flode.events.settings import Settings
from flode.events.topic_store import TopicStore
from flode.events.topics import Topics
from flode.events.versions import Conn
from flode.interactions.services import Services

log = structlog.get_logger(__name__)

NATS_LOCK = 0x464C4F44454E54  # "FLODENT"
MAX_DELIVERIES = 32
CLOSE_SECONDS = 10.0

# A cursor's position, its row locked (FOR UPDATE reads the latest committed position, even
# one committed by another node since the statement began), and the events after it.
_NEXT = f"""
    WITH c AS (SELECT position FROM event_cursor WHERE name = $1 FOR UPDATE)
    SELECT c.position, o.* FROM c LEFT JOIN LATERAL (
        SELECT {EVENT_COLUMNS} FROM outbox WHERE event > c.position ORDER BY event LIMIT $2
    ) o ON true"""

# A subscription's next event numbers and its events under them, in one statement; nothing
# when its row is gone.
_NUMBER = """
    WITH counted AS (
        UPDATE subscription SET events = events + cardinality($2::bigint[]) WHERE id = $1
        RETURNING events)
    INSERT INTO subscription_event (subscription_id, number, event, resource_type, resource_id,
                                    version, action, occurred)
    SELECT $1, c.events - cardinality($2::bigint[]) + u.n, u.e, u.t, u.i, u.v, u.a, u.o
    FROM counted c, unnest($2::bigint[], $3::text[], $4::text[], $5::integer[], $6::text[],
                           $7::timestamptz[]) WITH ORDINALITY AS u (e, t, i, v, a, o, n)"""

# The `match` cursor moved, and the nodes told that there is something to deliver.
_MATCHED = """
    WITH moved AS (UPDATE event_cursor SET position = $1 WHERE name = 'match')
    SELECT pg_notify('flode_subscription', '') WHERE $2::boolean"""


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
        self._sequenced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        """Subscriptions that got events while this node was delivering to them."""
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
        if self.publisher is not None:
            self._tasks.append(self._spawn(self._publishing, "events publishing"))
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

    # -- sequencing and matching

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
        """One round of sequencing and matching (publishing runs beside it); True if there
        is more to do."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                sequenced = await sequencer.sequence(conn, self.settings.batch)
            if sequenced:
                # The bus need not wait for the matching. (What another node sequenced, that
                # node publishes, or this one at its next poll.)
                self._sequenced.set()
            matched, notify = await self._match(conn)
        for id in notify:  # no need to wait for the notification to come back
            self._start(id)
        # Another round at once only if a step had more than one batch to do.
        return max(sequenced, matched) >= self.settings.batch

    async def _match(self, conn: Conn) -> tuple[int, list[str]]:
        """Match the next sequenced events in a transaction; (how many, the subscriptions
        that got some). The batch is matched without savepoints; if an event fails, the
        transaction is rolled back and the batch matched again one event at a time, so that
        only that event goes to no one."""
        for isolated in (False, True):
            try:
                async with conn.transaction():
                    return await self._match_next(conn, isolated)
            except asyncio.CancelledError:
                raise
            except Exception:
                if isolated:
                    raise
                self.matcher.invalidate()
        raise AssertionError("unreachable")

    async def _match_next(self, conn: Conn, isolated: bool) -> tuple[int, list[str]]:
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", sequencer.MATCH_LOCK):
            return 0, []
        position, events = await self._next_events(conn, "match")
        if position != self._matched_to:
            self.matcher.invalidate()  # another node matched since: its Subscriptions may differ
        if not events:
            self._matched_to = position
            return 0, []
        found = await self._match_batch(conn, events, isolated)
        for id, (_, matched) in found.items():
            await conn.execute(
                _NUMBER,
                id,
                [e.event for e in matched],
                [e.resource_type for e in matched],
                [e.resource_id for e in matched],
                [e.version for e in matched],
                [e.action for e in matched],
                [e.occurred for e in matched],
            )
        await conn.execute(_MATCHED, events[-1].event, bool(found))
        self._matched_to = events[-1].event
        return len(events), list(found)

    async def _next_events(self, conn: Conn, cursor: str) -> tuple[int, list[Event]]:
        """The position of `cursor` (its row locked) and the events after it, up to a batch;
        in one statement. Call it holding the cursor's advisory lock."""
        rows = await conn.fetch(_NEXT, cursor, self.settings.batch)
        position: int = rows[0]["position"]
        return position, [event_of(row) for row in rows if row["event"] is not None]

    async def _match_batch(
        self, conn: Conn, events: list[Event], isolated: bool
    ) -> dict[str, tuple[Active, list[Event]]]:
        """The events of each subscription; `isolated`: each event under a savepoint."""
        found: dict[str, tuple[Active, list[Event]]] = {}
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

    # -- publishing

    async def _publishing(self) -> None:
        """Publish after every round of the pipeline that sequenced (and every
        `poll_seconds`): a bus that is down holds up neither the matching nor the deliveries,
        and is tried again every `poll_seconds`, not after every round."""
        while True:
            await self._wait(self._sequenced)
            try:
                while await self.publish_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("publishing events failed; retrying")
                await asyncio.sleep(self.settings.poll_seconds)

    async def publish_once(self) -> bool:
        """Publish the next sequenced events, in order; the `nats` cursor moves once the bus
        has acknowledged them all. True if there may be more."""
        assert self.publisher is not None
        async with self.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", NATS_LOCK):
                return False
            _, events = await self._next_events(conn, "nats")
            if not events:
                return False
            await self.publisher.publish(events)
            await conn.execute(
                "UPDATE event_cursor SET position = $1 WHERE name = 'nats'", events[-1].event
            )
        return len(events) >= self.settings.batch

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
            self._again.add(id)  # it may have looked for events already: it looks again
            self._dirty = True  # and if it is just finishing, so does the next look for due ones
            return
        if len(self._serving) >= MAX_DELIVERIES:
            self._poke()
            return
        task = asyncio.create_task(self._serve(id), name=f"deliver {id}")
        self._serving[id] = task
        task.add_done_callback(partial(self._served, id))

    def _served(self, id: str, _: asyncio.Task[None]) -> None:
        self._serving.pop(id, None)
        self._again.discard(id)
        if self._dirty:  # what was matched meanwhile is not left to the next poll
            self._subscriptions.set()

    async def _serve(self, id: str) -> None:
        try:
            again = True
            while again:
                self._again.discard(id)
                await self.deliverer.serve(id)
                again = id in self._again
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivering a subscription failed", subscription=id)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.deliverer.release(id))
