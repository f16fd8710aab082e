"""Re-indexing stored resources in the background, after the search parameters changed.

A job walks the current versions in key order, in batches: each batch locks its resources,
replaces their index rows with what the indexer computes now, and records the job's progress,
all in one transaction. A resource written while the job runs is indexed by that write (with the
same parameters) and skipped by the job; a restart resumes every running job where it stopped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from flode.fhir import json
from flode.store.indexer import DELETE_STATEMENT, Indexer, insert_statement

log = structlog.get_logger(__name__)

BATCH = 200


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    types: tuple[str, ...] | None
    status: str
    """running, completed, failed or cancelled"""
    total: int
    done: int
    error: str | None
    created: datetime
    finished: datetime | None


def _job(row: asyncpg.Record) -> Job:
    types = row["types"]
    return Job(
        row["id"],
        None if types is None else tuple(types),
        row["status"],
        row["total"],
        row["done"],
        row["error"],
        row["created"],
        row["finished"],
    )


_BATCH_QUERY = """
    SELECT r.pk, r.resource_type, v.content FROM resource r
    JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
    WHERE r.pk > $1 AND NOT r.deleted AND ($2::text[] IS NULL OR r.resource_type = ANY($2))
    ORDER BY r.pk LIMIT $3
    FOR UPDATE OF r"""


class Reindexer:
    """Starts, runs, resumes and reports re-indexing jobs. `indexer` is read when each batch
    runs, so a job uses the parameters in force then."""

    def __init__(self, pool: asyncpg.Pool, indexer: Indexer, batch: int = BATCH) -> None:
        self.pool = pool
        self.indexer = indexer
        self.batch = batch
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    async def start(self, types: Sequence[str] | None) -> Job:
        id = uuid.uuid4()
        kinds = None if types is None else sorted(set(types))
        row = await self.pool.fetchrow(
            """INSERT INTO reindex_job (id, types, status, total)
               SELECT $1, $2, 'running', count(*) FROM resource r
               WHERE NOT r.deleted AND ($2::text[] IS NULL OR r.resource_type = ANY($2))
               RETURNING *""",
            id,
            kinds,
        )
        assert row is not None
        self._spawn(id)
        log.info("reindex started", job=str(id), types=kinds, total=row["total"])
        return _job(row)

    async def status(self, id: uuid.UUID) -> Job | None:
        row = await self.pool.fetchrow("SELECT * FROM reindex_job WHERE id = $1", id)
        return None if row is None else _job(row)

    async def cancel(self, id: uuid.UUID) -> Job | None:
        row = await self.pool.fetchrow(
            """UPDATE reindex_job SET status = 'cancelled', finished = now()
               WHERE id = $1 AND status = 'running' RETURNING *""",
            id,
        )
        task = self._tasks.pop(id, None)
        if task is not None:
            task.cancel()
        return await self.status(id) if row is None else _job(row)

    async def resume(self) -> int:
        """Continue the jobs a previous process left running; how many."""
        rows = await self.pool.fetch("SELECT id FROM reindex_job WHERE status = 'running'")
        for row in rows:
            self._spawn(row["id"])
        return len(rows)

    async def wait(self) -> None:
        """Until every job this process runs has stopped (for tests and shutdown)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await self.wait()

    def _spawn(self, id: uuid.UUID) -> None:
        task = asyncio.create_task(self._run(id), name=f"reindex {id}")
        self._tasks[id] = task
        task.add_done_callback(lambda _: self._tasks.pop(id, None))

    async def _run(self, id: uuid.UUID) -> None:
        try:
            while await self._batch(id):
                pass
        except Exception as exc:
            log.exception("reindex failed", job=str(id))
            await self.pool.execute(
                """UPDATE reindex_job SET status = 'failed', error = $2, finished = now()
                   WHERE id = $1""",
                id,
                f"{type(exc).__name__}: {exc}",
            )

    async def _batch(self, id: uuid.UUID) -> bool:
        """Re-index the next batch; False when the job has finished or was stopped."""
        async with self.pool.acquire() as conn, conn.transaction():
            job = await conn.fetchrow(
                "SELECT types, last_pk, status FROM reindex_job WHERE id = $1 FOR UPDATE", id
            )
            if job is None or job["status"] != "running":
                return False
            rows = await conn.fetch(_BATCH_QUERY, job["last_pk"], job["types"], self.batch)
            if not rows:
                await conn.execute(
                    """UPDATE reindex_job SET status = 'completed', finished = now(),
                       done = total WHERE id = $1""",
                    id,
                )
                log.info("reindex completed", job=str(id))
                return False
            for row in rows:
                await conn.execute(DELETE_STATEMENT, row["pk"])
                statement = insert_statement(
                    row["pk"], row["resource_type"], self.indexer.rows(json.loads(row["content"]))
                )
                if statement is not None:
                    await conn.execute(statement[0], *statement[1])
            await conn.execute(
                """UPDATE reindex_job SET done = least(total, done + $2), last_pk = $3
                   WHERE id = $1""",
                id,
                len(rows),
                rows[-1]["pk"],
            )
        return True
