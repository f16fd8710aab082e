"""Export jobs in the background: queued, run, resumed after a restart, cancelled, expired.

A job is a row in `export_job` (migration 0008) and a directory of NDJSON files. Whoever runs a
job holds a session advisory lock on it for as long as it runs, on a connection of its own: a
second server process (or node) skips the job, and when the process that ran it dies, PostgreSQL
drops the lock with its connection and the next process to look (every few seconds, and at
start-up) resumes the job after the last batch it saved. A job that cannot go on is marked
`failed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

from flode.access.protected import Masking
from flode.bulk.ndjson import NdjsonFiles, OutFile
from flode.bulk.run import BATCH, Cursor, run
from flode.bulk.selection import Selection, count
from flode.context import RequestContext
from flode.store.search import SearchCompiler

log = structlog.get_logger(__name__)

OPEN = ("accepted", "running")
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


def requested_by(ctx: RequestContext) -> dict[str, Any]:
    """The request context a job keeps, to run under the same access as its kick-off."""
    found = asdict(ctx)
    found["scopes"] = sorted(ctx.scopes)
    return found


def context_of(saved: dict[str, Any]) -> RequestContext:
    """The kick-off's request context again (fields this version does not know are left out,
    so a job survives an upgrade)."""
    names = {f.name for f in fields(RequestContext)}
    values: dict[str, Any] = {"request_id": "export", "base_url": ""}
    values.update((k, v) for k, v in saved.items() if k in names)
    values["scopes"] = frozenset(values.get("scopes", ()))
    return RequestContext(**values)


def _lock_key(id: uuid.UUID) -> str:
    return f"flode:export:{id}"


Conn = asyncpg.Connection | PoolConnectionProxy


class Exporter:
    """Runs export jobs; `start` and `close` bracket the server's life."""

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
        self.pool = pool
        self.compiler = compiler
        self.directory = directory
        self.max_file_bytes = max_file_bytes
        self.expiry = expiry
        self.workers = max(1, workers)
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.protected_identity_units = protected_identity_units
        """The care units whose exports hold patients with protected identity unmasked."""
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    # -- the life of the server ------------------------------------------------------------

    async def start(self) -> None:
        """Begin running queued jobs, and those a stopped process left running."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._watch(), name="export jobs")

    async def close(self) -> None:
        """Stop; running jobs stay `running` for the next process to resume."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def wait(self, id: uuid.UUID | None = None) -> None:
        """Until the job (or every job) has stopped in this or any process (for tests)."""
        while await self.pool.fetchval(
            "SELECT count(*) FROM export_job WHERE status = ANY($1::text[]) "
            "AND ($2::uuid IS NULL OR id = $2)",
            list(OPEN),
            id,
        ):
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _watch(self) -> None:
        while True:
            try:
                await self._claim()
                now = asyncio.get_running_loop().time()
                if now - self._last_cleanup > 60:
                    self._last_cleanup = now
                    await self.cleanup()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("export jobs: claiming or cleaning up failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def _claim(self) -> None:
        """Take open jobs that no process runs, up to `workers` at once."""
        if len(self._tasks) >= self.workers:
            return
        rows = await self.pool.fetch(
            "SELECT id FROM export_job WHERE status = ANY($1::text[]) ORDER BY created",
            list(OPEN),
        )
        for row in rows:
            if len(self._tasks) >= self.workers:
                return
            id = row["id"]
            if id in self._tasks:
                continue
            conn = await self.pool.acquire()
            try:
                locked = await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", _lock_key(id)
                )
            except BaseException:
                await self.pool.release(conn)
                raise
            if not locked:
                await self.pool.release(conn)
                continue
            task = asyncio.create_task(self._run(id, conn), name=f"export {id}")
            self._tasks[id] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for id, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[id]

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
        self._wake.set()
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
        task = self._tasks.get(id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(NdjsonFiles(self.job_directory(id), 1).remove)
        log.info("export cancelled", job=str(id))
        return await self.status(id)

    def job_directory(self, id: uuid.UUID) -> Path:
        return self.directory / str(id)

    async def cleanup(self) -> int:
        """Expire finished jobs past their time and delete the files of every job that is no
        longer served; how many directories were removed."""
        await self.pool.execute(
            """UPDATE export_job SET status = 'expired'
               WHERE status IN ('completed', 'failed') AND expires <= now()"""
        )
        if not self.directory.exists():
            return 0
        found: dict[uuid.UUID, Path] = {}
        for path in self.directory.iterdir():
            with contextlib.suppress(ValueError):
                found[uuid.UUID(path.name)] = path
        if not found:
            return 0
        live = await self.pool.fetch(
            """SELECT id FROM export_job WHERE id = ANY($1::uuid[])
               AND status IN ('accepted', 'running', 'completed')""",
            list(found),
        )
        removed = 0
        for id in set(found) - {row["id"] for row in live}:
            await asyncio.to_thread(NdjsonFiles(found[id], 1).remove)
            removed += 1
        return removed

    # -- running one job -----------------------------------------------------------------------

    async def _run(self, id: uuid.UUID, conn: PoolConnectionProxy) -> None:
        try:
            await self._run_locked(id, conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("export failed", job=str(id))
            with contextlib.suppress(Exception):
                await conn.execute(
                    """UPDATE export_job SET status = 'failed', error = $2, finished = now(),
                           expires = now() + $3::interval
                       WHERE id = $1 AND status IN ('accepted', 'running')""",
                    id,
                    f"{type(exc).__name__}: {exc}",
                    self.expiry,
                )
        finally:
            unlocked = False
            with contextlib.suppress(Exception):
                unlocked = await conn.fetchval(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", _lock_key(id)
                )
            if not unlocked:
                # A pooled connection must not keep the lock: nobody could resume the job.
                conn.terminate()
            await self.pool.release(conn)

    async def _run_locked(self, id: uuid.UUID, conn: Conn) -> None:
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
        await conn.execute(
            """UPDATE export_job SET status = 'completed', finished = now(),
                   expires = now() + $2::interval
               WHERE id = $1 AND status = 'running'""",
            id,
            self.expiry,
        )
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
