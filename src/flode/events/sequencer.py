"""Sequencing: outbox rows get their event numbers, in an order that never skips a committed
change and keeps each resource's versions in order (docs/storage.md "Outbox").

An identity or sequence value is taken when a row is inserted, not when it commits, so a
cursor over it would pass a row whose transaction commits late. Instead only rows of
transactions older than every transaction still running (`xid < pg_snapshot_xmin(…)`) are
taken: those have all committed or aborted, and no running or future transaction can add a
row below that horizon. Their order is (xid, id); a resource whose earlier version is still
waiting behind the horizon waits with it, and within a batch each resource's versions are put
in order. The numbers are assigned from the `sequence` cursor, in the same transaction.

Only one node sequences at a time (a transaction-scoped advisory lock); the others skip.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flode.events.versions import Conn

LOCK = 0x464C4F44455351  # "FLODESQ"
MATCH_LOCK = 0x464C4F44454D54  # "FLODEMT"

_READY = """
    WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon),
    first AS (
        SELECT o.resource_pk FROM outbox o, h
        WHERE o.event IS NULL AND o.xid < h.horizon
        ORDER BY o.xid, o.id LIMIT $1),
    ready AS (
        SELECT o.id, o.xid, o.resource_pk, o.version FROM outbox o, h
        WHERE o.event IS NULL AND o.xid < h.horizon
        AND o.resource_pk IN (SELECT resource_pk FROM first))
    SELECT r.id, r.resource_pk, r.version FROM ready r
    WHERE NOT EXISTS (
        SELECT 1 FROM outbox p, h
        WHERE p.event IS NULL AND p.resource_pk = r.resource_pk AND p.version < r.version
        AND p.xid >= h.horizon)
    ORDER BY r.xid, r.id"""


def order(rows: list[tuple[int, int, int]]) -> list[int]:
    """The ids of (id, resource_pk, version) rows given in (xid, id) order, rearranged so that
    each resource's versions follow each other in order, in the slots the resource occupies."""
    slots: dict[int, list[int]] = {}
    versions: dict[int, list[tuple[int, int]]] = {}
    for position, (id, pk, version) in enumerate(rows):
        slots.setdefault(pk, []).append(position)
        versions.setdefault(pk, []).append((version, id))
    ordered = [0] * len(rows)
    for pk, positions in slots.items():
        for position, (_, id) in zip(positions, sorted(versions[pk]), strict=True):
            ordered[position] = id
    return ordered


async def sequence(conn: Conn, limit: int = 1000) -> int:
    """Number the next ready rows, inside a transaction of `conn`; how many (0 when another
    node is sequencing or nothing is ready)."""
    if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
        return 0
    rows = await conn.fetch(_READY, limit)
    if not rows:
        return 0
    ids = order([(r["id"], r["resource_pk"], r["version"]) for r in rows])
    last = await conn.fetchval(
        "SELECT position FROM event_cursor WHERE name = 'sequence' FOR UPDATE"
    )
    numbers = list(range(last + 1, last + 1 + len(ids)))
    await conn.execute(
        """UPDATE outbox o SET event = u.event, sequenced = $3
           FROM unnest($1::bigint[], $2::bigint[]) AS u (id, event) WHERE o.id = u.id""",
        ids,
        numbers,
        datetime.now(UTC),
    )
    await conn.execute("UPDATE event_cursor SET position = $1 WHERE name = 'sequence'", numbers[-1])
    return len(ids)
