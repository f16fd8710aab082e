"""Import jobs in the background: queued, run, resumed after a restart, cancelled, expired.

A job is a row in `import_job` (migration 0015) with a row per input file. It is claimed as
every Bulk Data job is (flode.bulk.background: in one server process at a time, under an
advisory lock) and run in a process of its own (flode.bulk.import_run), which the claiming
server watches: stopping the server stops the process and leaves the job `running` for the
next server to resume; a process that ends without finishing its job fails it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from flode.bulk import import_store as store
from flode.bulk.background import OPEN, Conn, JobRunner
from flode.bulk.import_request import ImportRequest
from flode.bulk.import_sources import SourcePolicy
from flode.bulk.import_store import ImportJob

log = structlog.get_logger(__name__)

STOP_SECONDS = 10.0
"""How long a job's process is given to end when it is stopped, before it is killed."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What a job's process needs."""

    database_url: str
    data_dir: Path
    work_dir: Path
    """Where fetched files are kept while a job runs (a directory per job)."""
    import_dir: Path | None
    allowed_hosts: tuple[str, ...]
    max_bytes: int
    max_line_bytes: int
    expiry_seconds: float = 24 * 3600.0
    parent: int = 0
    """The server process: when it is gone, so is the job's lock, and the job's process stops."""
    json_logs: bool = True


class Importer(JobRunner):
    """Runs import jobs; `start` and `close` bracket the server's life."""

    table = store.TABLE
    kind = "import"
    kept = OPEN

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        expiry: timedelta,
        workers: int = 1,
        poll_seconds: float = 2.0,
    ) -> None:
        super().__init__(
            pool,
            settings.work_dir,
            expiry_seconds=expiry.total_seconds(),
            workers=workers,
            poll_seconds=poll_seconds,
        )
        self.settings = settings
        """What a job's process needs (`database_url` empty: no job can run)."""
        self.sources = SourcePolicy(settings.allowed_hosts, settings.import_dir)
        self._context: Any = multiprocessing.get_context("spawn")

    async def submit(
        self,
        asked: ImportRequest,
        *,
        request: str,
        requested_by: dict[str, Any],
        bearer: str | None,
    ) -> ImportJob:
        id = uuid.uuid4()
        async with self.pool.acquire() as conn:
            await store.insert(
                conn, id, asked, request=request, requested_by=requested_by, bearer=bearer
            )
        log.info("import accepted", job=str(id), inputs=len(asked.inputs), request=request)
        self.wake()
        job = await self.status(id)
        assert job is not None
        return job

    async def status(self, id: uuid.UUID) -> ImportJob | None:
        return await store.load(self.pool, id)

    async def errors(self, id: uuid.UUID, seq: int) -> list[str]:
        return await store.error_outcomes(self.pool, id, seq)

    async def cancel(self, id: uuid.UUID) -> bool:
        """Cancel a job (export.html#bulk-data-delete-request, as import-pnp.md has it), or
        drop a finished one's result; False if there is none."""
        if not await store.cancel(self.pool, id):
            return False
        await self.stop(id)
        await self.remove_files(id)
        log.info("import cancelled", job=str(id))
        return True

    async def fail(self, conn: Conn, id: uuid.UUID, reason: str) -> None:
        await store.fail(conn, id, reason, self.expiry_seconds)

    async def run_job(self, id: uuid.UUID, conn: Conn) -> None:
        job = await store.load(conn, id)
        if job is None or job.status not in OPEN:
            return
        if not self.settings.database_url:
            raise RuntimeError("this process was given no database URL to run imports with")
        # Imported here: the job's process loads as `flode load` does, which needs the whole
        # application (flode.load.worker), and that needs this module.
        from flode.bulk import import_run

        settings = replace(self.settings, parent=os.getpid(), expiry_seconds=self.expiry_seconds)
        process = self._context.Process(
            target=import_run.main, args=(str(id), settings), name=f"flode-import-{id}"
        )
        process.start()
        log.info("import process started", job=str(id), pid=process.pid)
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(process.sentinel, ended.set)  # readable once the process has ended
        try:
            await ended.wait()
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(_end, process))
            raise
        finally:
            loop.remove_reader(process.sentinel)
        await asyncio.to_thread(process.join)
        if process.exitcode != 0:
            await self.fail(
                conn, id, f"The import's process ended unexpectedly (exit code {process.exitcode})"
            )


def _end(process: Any) -> None:
    """Stop a job's process: what it wrote in its last chunk is rolled back with it."""
    process.terminate()
    process.join(STOP_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
