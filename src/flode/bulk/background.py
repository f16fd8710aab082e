"""Bulk Data jobs in the background (`$export`, `$import`): queued in a table, claimed under a
PostgreSQL advisory lock, resumed after a restart, and who may see them.

Whoever runs a job holds a session advisory lock on it for as long as it runs, on a connection
of its own: a second server process (or node) skips the job, and when the process that ran it
dies, PostgreSQL drops the lock with its connection and the next process to look (every few
seconds, and at start-up) resumes it. A job that fails is marked `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from flode.access import policy
from flode.context import RequestContext
from flode.fhir.errors import FhirError, error, not_found
from flode.interactions.outcome import Outcome

log = structlog.get_logger(__name__)

OPEN = ("accepted", "running")
RETRY_AFTER_SECONDS = 2
"""What a status request answers in `Retry-After` while a job runs."""

Conn = asyncpg.Connection | PoolConnectionProxy


def requested_by(ctx: RequestContext) -> dict[str, Any]:
    """The request context a job keeps, to run under the same access as its kick-off."""
    found = asdict(ctx)
    found["scopes"] = sorted(ctx.scopes)
    return found


def context_of(saved: dict[str, Any], task: str = "export") -> RequestContext:
    """The kick-off's request context again (fields this version does not know are left out,
    so a job survives an upgrade)."""
    names = {f.name for f in fields(RequestContext)}
    values: dict[str, Any] = {"request_id": task, "base_url": ""}
    values.update((k, v) for k, v in saved.items() if k in names)
    values["scopes"] = frozenset(values.get("scopes", ()))
    return RequestContext(**values)


def status_of(
    what: str,
    status: str,
    error_text: str | None,
    expires: datetime | None,
    progress: Callable[[], str],
    done: Callable[[], dict[str, Any]],
) -> Outcome:
    """A job's status (export.html#bulk-data-status-request): 202 with `X-Progress` and
    `Retry-After` while it runs, 500 with why it failed, 200 with its result when complete."""
    if status in OPEN:
        headers = {"X-Progress": progress(), "Retry-After": str(RETRY_AFTER_SECONDS)}
        return Outcome(202, headers=headers)
    if status == "failed":
        raise error(500, "exception", f"The {what} failed: {error_text}")
    until = format_datetime(expires or datetime.now(UTC), usegmt=True)
    return Outcome(200, body=done(), headers={"Expires": until})


def job_id(raw: str, what: str) -> uuid.UUID:
    """The id in a status URL; 404 for anything that is not one."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise not_found(f"There is no {what} '{raw}'") from None


def served(status: str, expires: datetime | None) -> bool:
    """Whether a job can still be asked about: not cancelled, not expired."""
    if status in ("cancelled", "expired"):
        return False
    return expires is None or expires > datetime.now(UTC)


def asked_by(ctx: RequestContext, saved: dict[str, Any], operation: str) -> bool:
    """Only the client (and user) that started a job, or an administrator, may see it."""
    if ctx.trusted:
        return True
    if saved.get("client_id") == ctx.client_id and saved.get("subject") == ctx.subject:
        return True
    try:
        policy.require_admin(ctx, operation)
    except FhirError:
        return False
    return True


async def finish(conn: Conn, table: str, id: uuid.UUID, expiry_seconds: float) -> bool:
    """Mark a running job completed, its result kept `expiry_seconds`; False if it is not
    running (cancelled meanwhile)."""
    done = await conn.fetchval(
        f"""UPDATE {table} SET status = 'completed', finished = now(),
               expires = now() + make_interval(secs => $2)
           WHERE id = $1 AND status = 'running' RETURNING true""",
        id,
        expiry_seconds,
    )
    return bool(done)


async def fail(conn: Conn, table: str, id: uuid.UUID, reason: str, expiry_seconds: float) -> None:
    """Mark an open job failed, with why."""
    await conn.execute(
        f"""UPDATE {table} SET status = 'failed', error = $2, finished = now(),
               expires = now() + make_interval(secs => $3)
           WHERE id = $1 AND status IN ('accepted', 'running')""",
        id,
        reason,
        expiry_seconds,
    )


class JobRunner:
    """Runs the open jobs of one table (`accepted` or `running`), up to `workers` at once in
    this process; `start` and `close` bracket the server's life. Subclasses say what running
    one job is (`run_job`) and what clean-up is due once a minute (`cleanup`)."""

    table: str
    """The jobs' table: a row per job with `id`, `status`, `error`, `created`, `finished`
    and `expires`."""
    kind: str
    """What the jobs are called in logs and lock keys (`export`, `import`)."""
    kept: tuple[str, ...] = OPEN
    """The jobs whose directories are kept; the clean-up removes the others'."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        directory: Path,
        *,
        expiry_seconds: float,
        workers: int,
        poll_seconds: float,
    ) -> None:
        self.pool = pool
        self.directory = directory
        """A directory per job (named by its id) is under it."""
        self.expiry_seconds = expiry_seconds
        self.workers = max(1, workers)
        self.poll_seconds = poll_seconds
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    # -- the life of the server ------------------------------------------------------------

    async def start(self) -> None:
        """Begin running queued jobs, and those a stopped process left running."""
        if self._loop is None:
            self._loop = asyncio.create_task(self._watch(), name=f"{self.kind} jobs")

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

    def wake(self) -> None:
        """Look for jobs to run now rather than at the next poll."""
        self._wake.set()

    async def wait(self, id: uuid.UUID | None = None) -> None:
        """Until the job (or every job) has stopped in this or any process (for tests)."""
        while await self.pool.fetchval(
            f"SELECT count(*) FROM {self.table} WHERE status = ANY($1::text[]) "
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
                log.exception(f"{self.kind} jobs: claiming or cleaning up failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    def lock_key(self, id: uuid.UUID) -> str:
        return f"flode:{self.kind}:{id}"

    async def _claim(self) -> None:
        """Take open jobs that no process runs, up to `workers` at once."""
        if len(self._tasks) >= self.workers:
            return
        rows = await self.pool.fetch(
            f"SELECT id FROM {self.table} WHERE status = ANY($1::text[]) ORDER BY created",
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
                    "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", self.lock_key(id)
                )
            except BaseException:
                await self.pool.release(conn)
                raise
            if not locked:
                await self.pool.release(conn)
                continue
            task = asyncio.create_task(self._run(id, conn), name=f"{self.kind} {id}")
            self._tasks[id] = task
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for id, running in list(self._tasks.items()):
            if running is task:
                del self._tasks[id]
        self._wake.set()  # a place is free for the next job

    async def stop(self, id: uuid.UUID) -> None:
        """Stop the job if this process runs it (after it was cancelled)."""
        task = self._tasks.get(id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- running one job -----------------------------------------------------------------------

    async def _run(self, id: uuid.UUID, conn: PoolConnectionProxy) -> None:
        try:
            await self.run_job(id, conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(f"{self.kind} failed", job=str(id))
            with contextlib.suppress(Exception):
                await self.fail(conn, id, f"{type(exc).__name__}: {exc}")
        finally:
            unlocked = False
            with contextlib.suppress(Exception):
                unlocked = await conn.fetchval(
                    "SELECT pg_advisory_unlock(hashtextextended($1, 0))", self.lock_key(id)
                )
            if not unlocked:
                # A pooled connection must not keep the lock: nobody could resume the job.
                conn.terminate()
            await self.pool.release(conn)

    async def finish(self, conn: Conn, id: uuid.UUID) -> bool:
        """Mark a running job completed; False if it is not running (cancelled meanwhile)."""
        return await finish(conn, self.table, id, self.expiry_seconds)

    async def fail(self, conn: Conn, id: uuid.UUID, reason: str) -> None:
        """Mark an open job failed, with why."""
        await fail(conn, self.table, id, reason, self.expiry_seconds)

    async def run_job(self, id: uuid.UUID, conn: Conn) -> None:
        """Run one job; `conn` holds its lock (and may be used for its queries)."""
        raise NotImplementedError

    def job_directory(self, id: uuid.UUID) -> Path:
        return self.directory / str(id)

    async def remove_files(self, id: uuid.UUID) -> None:
        """Delete a job's directory (what a write still under way leaves behind, a later
        clean-up removes)."""
        await asyncio.to_thread(shutil.rmtree, self.job_directory(id), True)

    async def cleanup(self) -> int:
        """Expire finished jobs past their time and delete the directories of every job that
        is not `kept`; how many directories were removed (once a minute)."""
        await self.pool.execute(
            f"""UPDATE {self.table} SET status = 'expired'
                WHERE status IN ('completed', 'failed') AND expires <= now()"""
        )
        if not self.directory.exists():
            return 0
        found: set[uuid.UUID] = set()
        for path in self.directory.iterdir():
            with contextlib.suppress(ValueError):
                found.add(uuid.UUID(path.name))
        if not found:
            return 0
        live = await self.pool.fetch(
            f"SELECT id FROM {self.table} WHERE id = ANY($1::uuid[]) AND status = ANY($2::text[])",
            list(found),
            list(self.kept),
        )
        stale = found - {row["id"] for row in live}
        for id in stale:
            await self.remove_files(id)
        return len(stale)
