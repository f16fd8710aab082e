"""Export jobs in the background: queued, run, resumed after a restart, cancelled, expired.

A job is a row in `export_job` (migration 0008) and a directory of NDJSON files. It is claimed
and run as every Bulk Data job is (flode.bulk.background: one process at a time, under an
advisory lock); a job resumed after a restart goes on after the last batch it saved. A job that
cannot go on is marked `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog

from flode.access.protected import Masking
from flode.bulk.background import OPEN, Conn, JobRunner, context_of, requested_by
from flode.bulk.ndjson import NdjsonFiles, OutFile
from flode.bulk.run import BATCH, Cursor, run
from flode.bulk.selection import Selection, count
from flode.store.search import SearchCompiler

log = structlog.get_logger(__name__)

__all__ = ["OPEN", "ExportJob", "Exporter", "context_of", "requested_by"]

# How long a new job waits at most for write transactions that began before its transaction
# time to end, so that it sees every resource written up to then.
SETTLE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ExportJob:
    id: uuid.UUID
    status: str
    """accepted, running, completed, failed, cancelled or expired"""
    level: str
    group_id: str | None
    selection: Selection
    request: str
    requested_by: dict[str, Any]
    issues: list[dict[str, Any]]
    total: int | None
    done: int
    cursor: Cursor
    error: str | None
    created: datetime
    finished: datetime | None
    expires: datetime | None
    files: list[OutFile] = field(default_factory=list)


def _job(row: asyncpg.Record, files: Sequence[asyncpg.Record]) -> ExportJob:
    patients = row["patients"]
    return ExportJob(
        id=row["id"],
        status=row["status"],
        level=row["level"],
        group_id=row["group_id"],
        selection=Selection(
            level=row["level"],
            types=tuple(row["types"]),
            transaction_time=row["transaction_time"],
            since=row["since"],
            patients=None if patients is None else tuple(patients),
            type_filters=tuple(row["type_filters"]),
        ),
        request=row["request"],
        requested_by=orjson.loads(row["requested_by"]),
        issues=orjson.loads(row["issues"]),
        total=row["total"],
        done=row["done"],
        cursor=Cursor(row["cursor_type"], row["cursor_id"] or "", row["done"]),
        error=row["error"],
        created=row["created"],
        finished=row["finished"],
        expires=row["expires"],
        files=[
            OutFile(f["name"], f["kind"], f["type"], f["seq"], f["count"], f["bytes"])
            for f in files
        ],
    )


class Exporter(JobRunner):
    """Runs export jobs; `start` and `close` bracket the server's life."""

    table = "export_job"
    kind = "export"
    kept = ("accepted", "running", "completed")

    def __init__(
        self,
        pool: asyncpg.Pool,
        compiler: SearchCompiler,
        directory: Path,
        *,
        max_file_bytes: int,
        expiry: timedelta,
        workers: int = 1,
        batch: int = BATCH,
        poll_seconds: float = 2.0,
        protected_identity_units: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(
            pool,
            directory,
            expiry_seconds=expiry.total_seconds(),
            workers=workers,
            poll_seconds=poll_seconds,
        )
        self.compiler = compiler
        self.max_file_bytes = max_file_bytes
        self.expiry = expiry
        self.batch = batch
        self.protected_identity_units = protected_identity_units
        """The care units whose exports hold patients with protected identity unmasked."""

    # -- jobs --------------------------------------------------------------------------------

    async def submit(
        self,
        selection: Selection,
        *,
        request: str,
        requested_by: dict[str, Any],
        issues: Sequence[dict[str, Any]] = (),
        group_id: str | None = None,
    ) -> ExportJob:
        id = uuid.uuid4()
        await self.pool.execute(
            """INSERT INTO export_job (id, status, level, group_id, patients, types,
                   type_filters, since, transaction_time, request, requested_by, issues)
               VALUES ($1, 'accepted', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            id,
            selection.level,
            group_id,
            None if selection.patients is None else list(selection.patients),
            list(selection.types),
            list(selection.type_filters),
            selection.since,
            selection.transaction_time,
            request,
            orjson.dumps(requested_by).decode(),
            orjson.dumps(list(issues)).decode(),
        )
        log.info("export accepted", job=str(id), level=selection.level, request=request)
        self.wake()
        job = await self.status(id)
        assert job is not None
        return job

    async def status(self, id: uuid.UUID) -> ExportJob | None:
        async with self.pool.acquire() as conn:
            return await self._load(conn, id)

    async def _load(self, conn: Conn, id: uuid.UUID) -> ExportJob | None:
        row = await conn.fetchrow("SELECT * FROM export_job WHERE id = $1", id)
        if row is None:
            return None
        files = await conn.fetch("SELECT * FROM export_file WHERE job_id = $1 ORDER BY seq", id)
        return _job(row, files)

    async def cancel(self, id: uuid.UUID) -> ExportJob | None:
        """Cancel a job, or drop a finished one's files (export.html#bulk-data-delete-request);
        None when there is no such job or it was cancelled or expired before."""
        row = await self.pool.fetchrow(
            """UPDATE export_job SET status = 'cancelled', finished = coalesce(finished, now())
               WHERE id = $1 AND status IN ('accepted', 'running', 'completed', 'failed')
               RETURNING id""",
            id,
        )
        if row is None:
            return None
        await self.stop(id)
        await self.remove_files(id)
        log.info("export cancelled", job=str(id))
        return await self.status(id)

    # -- running one job -----------------------------------------------------------------------

    async def run_job(self, id: uuid.UUID, conn: Conn) -> None:
        job = await self._load(conn, id)
        if job is None or job.status not in OPEN:
            return
        files = NdjsonFiles(self.job_directory(id), self.max_file_bytes, job.files)
        await asyncio.to_thread(files.restore)
        ctx = context_of(job.requested_by)
        if job.status == "accepted":
            await self._settle(conn, job.selection.transaction_time)
            total = 0
            for resource_type in job.selection.types:
                total += await count(conn, job.selection, resource_type, self.compiler, ctx)
            started = await conn.fetchrow(
                """UPDATE export_job SET status = 'running', total = $2
                   WHERE id = $1 AND status = 'accepted' RETURNING id""",
                id,
                total,
            )
            if started is None:
                return
            log.info("export running", job=str(id), total=total)
        else:
            log.info("export resumed", job=str(id), done=job.done)
        # Masked as the one who asked may see them: the kick-off's context, kept with the job.
        masking = Masking.of(ctx, self.protected_identity_units)
        steps = run(conn, job.selection, files, job.cursor, self.compiler, self.batch, ctx, masking)
        async for step in steps:
            if not await self._save(conn, id, step.cursor, step.touched):
                return  # cancelled meanwhile
        if job.issues:
            lines = [orjson.dumps(issue).decode() for issue in job.issues]
            touched = await asyncio.to_thread(files.write, "error", "OperationOutcome", lines)
            if not await self._save(conn, id, None, touched):
                return
        await self.finish(conn, id)
        log.info("export completed", job=str(id))

    async def _settle(self, conn: Conn, transaction_time: datetime) -> None:
        """Wait for write transactions that began before the transaction time to end
        (export.html: the export "SHALL include any matching resources modified up to and
        including this instant")."""
        for _ in range(int(SETTLE_SECONDS / 0.05)):
            writers = await conn.fetchval(
                """SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND pid <> pg_backend_pid()
                     AND state <> 'idle' AND xact_start <= $1 AND backend_xid IS NOT NULL""",
                transaction_time,
            )
            if not writers:
                return
            await asyncio.sleep(0.05)

    async def _save(
        self, conn: Conn, id: uuid.UUID, cursor: Cursor | None, touched: list[OutFile]
    ) -> bool:
        """Record a batch: the cursor and the files' sizes, together; False if the job is no
        longer running."""
        async with conn.transaction():
            if cursor is None:
                row = await conn.fetchrow(
                    "SELECT id FROM export_job WHERE id = $1 AND status = 'running' FOR UPDATE",
                    id,
                )
            else:
                row = await conn.fetchrow(
                    """UPDATE export_job SET cursor_type = $2, cursor_id = $3, done = $4
                       WHERE id = $1 AND status = 'running' RETURNING id""",
                    id,
                    cursor.type_index,
                    cursor.after or None,
                    cursor.done,
                )
            if row is None:
                return False
            if touched:
                await conn.executemany(
                    """INSERT INTO export_file (job_id, name, kind, type, seq, count, bytes)
                       VALUES ($1, $2, $3, $4, $5, $6, $7)
                       ON CONFLICT (job_id, name) DO UPDATE
                       SET count = excluded.count, bytes = excluded.bytes""",
                    [(id, f.name, f.kind, f.type, f.seq, f.count, f.bytes) for f in touched],
                )
        return True
