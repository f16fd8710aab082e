"""Retention of the change feed and of what subscriptions keep (docs/events.md "Retention"),
so that none of them grows forever:

- `outbox`: a row is only needed until its event is matched to the subscriptions (which copy
  it into `subscription_event`) and, once anything is published to NATS JetStream, published
  there. Rows past both cursors go; an event NATS has not taken goes only after the retention.
  A row that has no event number yet is never touched.
- `subscription_event`: each subscription keeps its events for the retention, delivered or
  not, so that `$events` can replay them; older ones go, always the oldest first, so what is
  left is an unbroken run of event numbers.
- `subscription_attempt`: delivery attempts older than the retention go.
- A deleted Subscription loses its events and attempts at once (nothing can read them).

Every batch is a transaction of its own: a long one would hold back the sequencer (which
waits for the oldest running transaction) and every writer of the rows. One pruner runs at a
time (a session advisory lock); `flode events prune` and the dispatchers' background job
(flode.events.dispatcher) both call `prune`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flode.events.outbox import Conn

LOCK = 0x464C4F44455052  # "FLODEPR"
BATCH = 5000
OUTBOX, EVENTS, ATTEMPTS = "outbox", "subscription_event", "subscription_attempt"
"""The steps of a prune, each named after its table."""

Progress = Callable[[str, int, int], None]
"""Told (step, rows removed so far, rows the step removes) after every batch."""


def _quiet(step: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Span:
    """The rows of `table` whose `key` is from `first` up to (not including) `stop`, within one
    subscription's when `subscription` is given; `rows` of them (if None: one per key)."""

    table: str
    key: str
    first: int
    stop: int
    subscription: str | None = None
    rows: int | None = None

    @property
    def size(self) -> int:
        return max(0, self.stop - self.first) if self.rows is None else self.rows


@dataclass(frozen=True, slots=True)
class Plan:
    """What one prune removes; every bound was read before anything is removed, and writes
    that come meanwhile only add rows above them."""

    cutoff: datetime
    steps: dict[str, list[Span]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pruned:
    cutoff: datetime
    removed: dict[str, int]


async def _outbox(conn: Conn, cutoff: datetime, publishing: bool) -> list[Span]:
    row = await conn.fetchrow(
        """SELECT (SELECT position FROM event_cursor WHERE name = 'match') AS matched,
                  (SELECT position FROM event_cursor WHERE name = 'nats') AS published,
                  (SELECT min(event) FROM outbox) AS first"""
    )
    assert row is not None  # scalar subqueries: always one row
    matched, published, first = row["matched"], row["published"], row["first"]
    if first is None:
        return []
    bound = matched
    if (publishing or published > 0) and published < matched:
        # Not yet on NATS: kept for the retention, the oldest removed first.
        recent = await conn.fetchval(
            """SELECT min(event) FROM outbox
               WHERE event > $1 AND event <= $2 AND occurred >= $3""",
            published,
            matched,
            cutoff,
        )
        bound = max(published, matched if recent is None else recent - 1)
    return [Span("outbox", "event", first, bound + 1)]


async def _per_subscription(
    conn: Conn, table: str, key: str, when: str, cutoff: datetime, counted: bool
) -> list[Span]:
    """Each subscription's rows of `table` up to the first one at or after `cutoff` (by
    `when`), in `key` order; all of a deleted Subscription's. `counted`: the keys have gaps,
    so the rows are counted."""
    rows = await conn.fetch(
        f"""WITH bounds AS (
                SELECT s.id, t.first,
                       CASE WHEN coalesce(r.deleted, true) THEN t.last + 1
                       ELSE coalesce((SELECT min(k.{key}) FROM {table} k
                                      WHERE k.subscription_id = s.id AND k.{when} >= $1),
                                     t.last + 1) END AS stop
                FROM subscription s
                LEFT JOIN resource r ON r.resource_type = 'Subscription' AND r.id = s.id
                CROSS JOIN LATERAL (SELECT min({key}) AS first, max({key}) AS last
                                    FROM {table} WHERE subscription_id = s.id) t
                WHERE t.first IS NOT NULL)
            SELECT b.id, b.first, b.stop,
                   CASE WHEN $2 THEN (SELECT count(*) FROM {table} c WHERE c.subscription_id = b.id
                                      AND c.{key} >= b.first AND c.{key} < b.stop) END AS rows
            FROM bounds b WHERE b.stop > b.first ORDER BY b.id""",
        cutoff,
        counted,
    )
    return [Span(table, key, r["first"], r["stop"], r["id"], r["rows"]) for r in rows]


async def plan(conn: Conn, retention_days: int, publishing: bool, now: datetime | None) -> Plan:
    """What a prune at `now` (the database's clock if None) removes."""
    now = now or await conn.fetchval("SELECT now()")
    cutoff = now - timedelta(days=max(1, retention_days))
    events = await _per_subscription(
        conn, "subscription_event", "number", "occurred", cutoff, counted=False
    )
    attempts = await _per_subscription(
        conn, "subscription_attempt", "id", "at", cutoff, counted=True
    )
    outbox = await _outbox(conn, cutoff, publishing)
    return Plan(cutoff, {OUTBOX: outbox, EVENTS: events, ATTEMPTS: attempts})


class _Tally:
    """Rows removed by one step so far, told to `progress` as they go."""

    def __init__(self, step: str, total: int, progress: Progress) -> None:
        self.step, self.total, self.progress = step, total, progress
        self.done = 0

    def __call__(self, removed: int) -> None:
        self.done += removed
        self.progress(self.step, self.done, max(self.total, self.done))


async def _remove(conn: Conn, span: Span, batch: int, removed: Callable[[int], None]) -> None:
    """The span's rows, `batch` key values at a time, each batch committed on its own."""
    where = f"{span.key} >= $1 AND {span.key} < $2"
    args: list[object] = []
    if span.subscription is not None:
        where += " AND subscription_id = $3"
        args.append(span.subscription)
    low = span.first
    while low < span.stop:
        high = min(low + batch, span.stop)
        status = await conn.execute(f"DELETE FROM {span.table} WHERE {where}", low, high, *args)
        removed(int(status.split()[-1]))
        low = high


async def prune(
    conn: Conn,
    retention_days: int,
    *,
    publishing: bool = False,
    now: datetime | None = None,
    progress: Progress = _quiet,
    batch: int = BATCH,
) -> Pruned | None:
    """Remove what the retention lets go (`publishing`: this server publishes to NATS); None
    if another prune is running. `conn` must not be in a transaction."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
        return None
    try:
        found = await plan(conn, retention_days, publishing, now)
        removed = {}
        for step, spans in found.steps.items():
            tally = _Tally(step, sum(s.size for s in spans), progress)
            progress(step, 0, tally.total)
            for span in spans:
                await _remove(conn, span, batch, tally)
            progress(step, tally.done, tally.done)
            removed[step] = tally.done
        return Pruned(found.cutoff, removed)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK)
