"""Sealing: the log's entries chained by hash, so that a changed or removed entry shows
(flode.audit.verify).

An entry is durable once the statement that wrote it commits; sealing follows a moment later.
The sealer takes the unsealed entries in `seq` order (only committed ones are visible), gives
each the next chain position, the hash of the entry before it (`prev_hash`; 32 zero bytes for
the first) and its own `hash` = sha256(prev_hash ‖ canonical bytes of its fields, content
included). One node seals at a time: each round holds a transaction-scoped advisory lock, and
a node that cannot take it leaves the round to the one that has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

from flode.fhir.dates import format_instant

log = structlog.get_logger(__name__)

Conn = asyncpg.Connection | PoolConnectionProxy
Row = Mapping[str, Any] | asyncpg.Record

LOCK = 0x464C4F44454155  # "FLODEAU"
GENESIS = bytes(32)
BATCH = 1000
FIELDS = (
    "chain_pos",
    "id",
    "recorded",
    "patient_id",
    "agent_hsa_id",
    "client_id",
    "care_unit",
    "care_provider",
    "purpose",
    "interaction",
    "action",
    "outcome",
    "flags",
    "content",
)
COLUMNS = ", ".join(FIELDS[1:])


def canonical(row: Row, chain_pos: int) -> bytes:
    """The bytes of an entry that its hash covers: every field but `seq` and the seal, as a
    JSON array in a fixed order, the time in UTC with microseconds."""
    values: list[Any] = [chain_pos]
    for name in FIELDS[1:]:
        value = row[name]
        if name == "recorded":
            value = format_instant(value)
        elif name == "flags":
            value = list(value)
        values.append(value)
    return orjson.dumps(values)


def digest(prev_hash: bytes, row: Row, chain_pos: int) -> bytes:
    return hashlib.sha256(prev_hash + canonical(row, chain_pos)).digest()


async def seal(conn: Conn, limit: int = BATCH, wait: bool = False) -> int:
    """Seal the next unsealed entries, at most `limit`, in a transaction of its own; how many.
    0 when another node is sealing, unless `wait`: then wait for it and seal after it."""
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", LOCK):
            return 0
        rows = await conn.fetch(
            f"SELECT seq, {COLUMNS} FROM audit_event WHERE chain_pos IS NULL ORDER BY seq LIMIT $1",
            limit,
        )
        if not rows:
            return 0
        last = await conn.fetchrow(
            "SELECT chain_pos, hash FROM audit_event WHERE chain_pos IS NOT NULL "
            "ORDER BY chain_pos DESC LIMIT 1"
        )
        if last is None:
            last = await conn.fetchrow(
                "SELECT chain_pos, hash FROM audit_anchor ORDER BY chain_pos DESC LIMIT 1"
            )
        position, previous = (0, GENESIS) if last is None else (last["chain_pos"], last["hash"])
        seqs: list[int] = []
        positions: list[int] = []
        hashes: list[bytes] = []
        prevs: list[bytes] = []
        for row in rows:
            position += 1
            current = digest(previous, row, position)
            seqs.append(row["seq"])
            positions.append(position)
            hashes.append(current)
            prevs.append(previous)
            previous = current
        await conn.execute(
            """UPDATE audit_event e SET chain_pos = u.pos, hash = u.hash, prev_hash = u.prev
               FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])
                   AS u (seq, pos, hash, prev)
               WHERE e.seq = u.seq""",
            seqs,
            positions,
            hashes,
            prevs,
        )
        return len(rows)


async def seal_all(conn: Conn) -> int:
    """Seal everything committed so far (on demand: waits for a sealer at work); how many."""
    total = 0
    while count := await seal(conn, wait=True):
        total += count
    return total


class Sealer:
    """Seals in the background, every `interval` seconds and when woken."""

    def __init__(self, pool: asyncpg.Pool, interval: float = 1.0) -> None:
        self.pool = pool
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit sealer")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    while await seal(conn) == BATCH:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sealing the audit log failed; trying again")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
