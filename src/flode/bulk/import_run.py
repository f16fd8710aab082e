"""Running one `$import` job, in a process of its own (started by flode.bulk.import_jobs), so
that validating and indexing, which take most of an import's time, never hold up the server's
requests.

The process loads as `flode load --fast` does (flode.load.worker.open_loader: the same pool and
services, and a `FastWriter` for the requester), line by line (flode.load.lenient): the
Subscriptions and SubscriptionTopics are checked and served as if the requester wrote them
through the API. The inputs are loaded in rounds:
an input whose line has a conditional reference that matches nothing yet waits at that line
while the others are loaded, and goes on in the next round; when a round moves no input, the
last one loads what is left, such lines reported as errors. After every chunk the input's line
and the errors of its lines are saved together, so a job stopped at any point goes on after the
last saved line; a chunk written but not yet saved is written again (new versions of the same
resources, never copies).
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import signal
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
import uvloop

from flode import logs
from flode.access import ownership
from flode.audit import Access, append
from flode.bulk import import_store as store
from flode.bulk.background import OPEN, Conn, context_of
from flode.bulk.import_jobs import Settings
from flode.bulk.import_sources import Fetched, Fetcher, FetchFailed, SourcePolicy, pull
from flode.bulk.import_store import DONE, ImportInput, ImportJob
from flode.bulk.imports import may_write
from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue, operation_outcome
from flode.interactions.services import Services
from flode.load import hooks, worker
from flode.load.fast import FastWriter
from flode.load.lenient import LineLoader, read_lines

log = structlog.get_logger(__name__)

LANES = 2
"""Inputs loaded at once: one computes while the other waits for the database."""
GC_CHUNKS = 20
NICENESS = 10


class Stopped(Exception):
    """The job was cancelled, or the server that runs it is gone."""


def main(job: str, settings: Settings) -> None:
    """The process's main function."""
    # Ctrl-C reaches the whole process group; the server decides and stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Requests first: the server's process gets the processor before this one.
    os.nice(NICENESS)
    logs.configure(json_lines=settings.json_logs)
    uvloop.run(_main(uuid.UUID(job), settings))


async def _main(id: uuid.UUID, settings: Settings) -> None:
    loading = worker.Settings(
        settings.database_url,
        settings.data_dir,
        fast=True,
        force=True,
        concurrency=LANES,
        json_logs=settings.json_logs,
    )
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with (
        worker.open_loader(loading) as loader,
        httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False) as client,
    ):
        # Many parsed resources alive at once make the cyclic collector the main cost: it is
        # paused, and run between inputs and every few chunks (as flode.load.worker does).
        gc.collect()
        gc.freeze()
        gc.disable()
        run = ImportRun(id, loader.services, settings, client)
        try:
            await run.run()
        except* Stopped:
            log.info("import stopped", job=str(id))
        except* Exception as group:
            log.exception("import failed", job=str(id))
            reason = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
            async with loader.services.store.pool.acquire() as conn:
                await store.fail(conn, id, reason, settings.expiry_seconds)


class ImportRun:
    def __init__(
        self,
        id: uuid.UUID,
        services: Services,
        settings: Settings,
        client: httpx.AsyncClient,
    ) -> None:
        self.id = id
        self.services = services
        self.pool = services.store.pool
        self.settings = settings
        self.client = client
        self.policy = SourcePolicy(settings.allowed_hosts, settings.import_dir)
        self._lock = asyncio.Lock()
        self._chunks = 0

    async def run(self) -> None:
        # One connection for the job's bookkeeping, beside those the writers take.
        async with self.pool.acquire() as conn:
            self.conn = conn
            await self._run(conn)

    @asynccontextmanager
    async def _books(self) -> AsyncIterator[Conn]:
        """The bookkeeping connection, for one lane at a time."""
        async with self._lock:
            yield self.conn

    async def _run(self, conn: Conn) -> None:
        job = await store.load(conn, self.id)
        if job is None or job.status not in OPEN or not await store.start(conn, self.id):
            return
        ctx = context_of(job.requested_by, f"import:{self.id}")
        fetcher = Fetcher(
            self.policy,
            self.client,
            max_bytes=self.settings.max_bytes,
            own_base=ctx.base_url,
            bearer=job.bearer,
        )
        if job.export_url is not None and not job.inputs:
            log.info("import pulling", job=str(self.id), url=job.export_url)

            async def started(url: str) -> None:
                await store.export_started(conn, self.id, url)

            try:
                found = await pull(
                    fetcher,
                    job.export_url,
                    job.export_type or "dynamic",
                    job.export_parameters,
                    job.export_status_url,
                    started,
                )
            except FetchFailed as exc:
                reason = f"Pulling the export failed: {exc}"
                await store.fail(conn, self.id, reason, self.settings.expiry_seconds)
                return
            if not await store.add_inputs(conn, self.id, found):
                return
        log.info("import running", job=str(self.id))
        await self._rounds(ctx, fetcher)
        if await store.complete(conn, self.id, self.settings.expiry_seconds):
            log.info("import completed", job=str(self.id))
        shutil.rmtree(self.settings.work_dir / str(self.id), ignore_errors=True)

    async def _job(self) -> ImportJob:
        async with self._books() as conn:
            job = await store.load(conn, self.id)
        if job is None or job.status != "running":
            raise Stopped
        return job

    async def _rounds(self, ctx: RequestContext, fetcher: Fetcher) -> None:
        wait = True
        while True:
            left = [i for i in (await self._job()).inputs if i.status not in DONE]
            if not left:
                return
            moved = await self._round(ctx, fetcher, left, wait)
            # Nothing moved: what the inputs wait for is in none of them. The last round
            # loads the rest, and reports such lines as errors.
            wait = wait and moved

    async def _round(
        self, ctx: RequestContext, fetcher: Fetcher, left: list[ImportInput], wait: bool
    ) -> bool:
        """Each input from where it is, `LANES` at a time; whether any moved."""
        moved = False

        async def lane() -> None:
            nonlocal moved
            while left:
                moved = await self._input(ctx, fetcher, left.pop(0), wait) or moved
                gc.collect()

        async with asyncio.TaskGroup() as lanes:
            for _ in range(LANES):
                lanes.create_task(lane())
        return moved

    async def _fail(self, item: ImportInput, issue: Issue) -> None:
        error = (0, operation_outcome([issue]))
        await self._save(item, item.line, 0, "failed", [error])

    async def _save(
        self,
        item: ImportInput,
        line: int,
        loaded: int,
        status: str,
        errors: list[tuple[int, dict[str, Any]]],
    ) -> None:
        async with self._books() as conn:
            if not await store.save(
                conn, self.id, item.seq, line=line, loaded=loaded, status=status, errors=errors
            ):
                raise Stopped

    async def _input(
        self, ctx: RequestContext, fetcher: Fetcher, item: ImportInput, wait: bool
    ) -> bool:
        """Load an input from its last line; whether it moved."""
        if item.type not in self.services.definitions.resource_types:  # a pulled manifest's
            text = f"'{item.type}' is not a FHIR R4 resource type"
            await self._fail(item, Issue("error", "invalid", text, ("type",)))
            return True
        try:
            may_write(ctx, item.type)
        except FhirError as exc:
            await self._fail(item, exc.issues[0])
            return True
        try:
            fetched = await self._fetch(fetcher, item)
        except FetchFailed as exc:
            await self._fail(item, Issue("error", "not-found", str(exc), ("url",)))
            return True
        loader = LineLoader(
            FastWriter(self.services, ctx),
            item.type,
            fetched.sha256,
            owner=ownership.of_writer(ctx),
            max_line=self.settings.max_line_bytes,
        )
        record = _Record(item, fetched.sha256)
        line, moved = item.line, False
        try:
            for lines in read_lines(fetched.path, item.line, self.settings.max_line_bytes):
                step = await loader.load(lines, wait=wait)
                await self._log_access(ctx, item, step.patients - record.patients)
                record.add(step.written, step.patients)
                status = "deferred" if step.waiting else "pending"
                errors = [(e.line, e.outcome) for e in step.errors]
                await self._save(item, step.last, len(step.written), status, errors)
                self._chunks += 1
                if self._chunks % GC_CHUNKS == 0:
                    gc.collect()
                moved = moved or step.last > line or bool(step.written)
                line = step.last
                if os.getppid() != self.settings.parent:
                    raise Stopped  # the server is gone, and its lock with it
                if step.waiting:
                    return moved
        except (OSError, EOFError, zlib.error) as exc:
            await self._fail(
                item, Issue("error", "structure", f"'{item.url}' cannot be read: {exc}")
            )
            return True
        finally:
            record.finish(ctx)
        await self._save(item, line, 0, "loaded", [])
        return True

    async def _fetch(self, fetcher: Fetcher, item: ImportInput) -> Fetched:
        """The input's file: fetched once per job and kept while it runs; read again after a
        restart only if it is gone, and then only if its content is what was begun."""
        target = self.settings.work_dir / str(self.id) / f"{item.seq}.ndjson"
        local = urlsplit(item.url).scheme.lower() == "file"
        kept = target.is_file() and target.stat().st_size == item.bytes
        if not local and kept and item.sha256 is not None and item.bytes is not None:
            return Fetched(target, item.bytes, item.sha256)
        fetched = await fetcher.download(item.url, target)
        if item.sha256 is None:
            async with self._books() as conn:
                await store.source(conn, self.id, item.seq, fetched.size, fetched.sha256)
        elif fetched.sha256 != item.sha256 and item.line > 0:
            raise FetchFailed(
                f"'{item.url}' has changed since the import began reading it: it cannot resume "
                f"after line {item.line}"
            )
        return fetched

    async def _log_access(self, ctx: RequestContext, item: ImportInput, new: set[str]) -> None:
        """The access log (L4): one entry per patient whose data an input wrote, once the
        first chunk that wrote some is committed (the patients as the indexer found them)."""
        if ctx.trusted or not new:
            return
        detail = f"$import {self.id}: {item.type} from {item.url}"[:500]
        entries = [Access("update", "U", patient, detail=detail) for patient in sorted(new)]
        async with self._books() as conn:
            await append(conn, ctx, entries)


class _Record:
    """What an input wrote in this run, recorded as `flode load` records a file
    (flode.load.hooks.record_load)."""

    def __init__(self, item: ImportInput, sha256: str) -> None:
        self.item = item
        self.sha256 = sha256
        self.started = datetime.now(UTC)
        self.written = 0
        self.patients: set[str] = set()

    def add(self, written: list[tuple[str, str]], patients: set[str]) -> None:
        self.written += len(written)
        self.patients |= patients

    def finish(self, ctx: RequestContext) -> None:
        if not self.written:
            return
        hooks.record_load(
            ctx,
            hooks.LoadRecord(
                self.item.url,
                self.sha256,
                "fast",
                self.started,
                datetime.now(UTC),
                {self.item.type: self.written},
                sorted(self.patients),
            ),
        )
