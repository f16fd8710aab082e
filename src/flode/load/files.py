"""Loading one file: skip it if its content was loaded before, plan its writes, write them by
the chosen path, and record the load (the `load_file` table, the access log)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import structlog

from flode.context import RequestContext
from flode.fhir.errors import FhirError
from flode.interactions.services import Services
from flode.load import hooks, plan, sources, subscriptions
from flode.load.fast import FastWriter, Invalid
from flode.load.sources import SourceError
from flode.load.transactional import Refused, TransactionWriter, describe

log = structlog.get_logger("flode.load")

# Resources per transaction for collections and NDJSON.
CHUNK = 1000

Report = Callable[[int, int], None]
"""Progress: (resources written, bytes of the file read) since the last report."""

FIX_FILE = "Fix the file (or leave it out) and run the same command again."
FIX_RESOURCE = "Correct the resource and run the same command again; loaded files are skipped."
CHECK_DATABASE = "Check the database, then run the same command again."
SEE_LOG = "See the log above for the stack trace; run the same command again."


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    status: str
    """`loaded`, `skipped` (loaded before), `failed`, `deferred` (a conditional reference
    matched nothing: the runner tries again once the other files are loaded) or
    `interrupted` (not loaded, or not completely, when the load was stopped). A Subscription
    whose topic is not offered defers its file too: the topic may be in another."""
    resources: int = 0
    method: str = ""
    reason: str = ""
    hint: str = ""
    seconds: float = 0.0


@dataclass
class _Written:
    """The (type, id) of every resource a file has written, and whether only the fast path
    wrote them."""

    keys: list[tuple[str, str]] = field(default_factory=list)
    fast_only: bool = True
    patients: set[str] = field(default_factory=set)
    """The patients of what the fast path wrote (the indexer found them already)."""

    def add(self, keys: Sequence[tuple[str, str]], patients: set[str] | None = None) -> None:
        self.keys.extend(keys)
        self.patients |= patients or set()


class _Bytes:
    """Reports bytes read as a file's chunks are written, whatever unit the source counts in."""

    def __init__(self, report: Report, size: int) -> None:
        self.report, self.size, self.sent = report, size, 0

    def at(self, resources: int, position: int) -> None:
        position = min(position, self.size)
        self.report(resources, position - self.sent)
        self.sent = position


class FileLoader:
    def __init__(self, services: Services, ctx: RequestContext, *, fast: bool, force: bool) -> None:
        self.services = services
        self.ctx = ctx
        self.fast = fast
        self.force = force
        self.fast_writer = FastWriter(services, ctx)
        self.transaction_writer = TransactionWriter(services, ctx)

    async def load(self, path: Path, report: Report) -> FileResult:
        started, clock = datetime.now(UTC), time.monotonic()
        written = _Written()
        name = str(path)
        try:
            size, sha256 = _identify(path)
            if not self.force:
                before = await self.services.store.pool.fetchval(
                    "SELECT path FROM load_file WHERE sha256 = $1", sha256
                )
                if before is not None:
                    report(0, size)
                    return FileResult(name, "skipped", reason=f"loaded before, from {before}")
            progress = _Bytes(report, size)
            try:
                await self._load(path, sha256, progress, written)
            except BaseException:
                # What was committed before the failure is recorded too.
                await self._record(await self._describe(name, sha256, started, written))
                raise
            record = await self._describe(name, sha256, started, written)
            try:
                await self.services.store.pool.execute(
                    """INSERT INTO load_file (sha256, path, bytes, resources, method)
                       VALUES ($1, $2, $3, $4, $5)
                       ON CONFLICT (sha256) DO UPDATE SET path = $2, resources = $4,
                           method = $5, loaded_at = now()""",
                    sha256,
                    name,
                    size,
                    len(written.keys),
                    self._method(written),
                )
            finally:
                await self._record(record)
            progress.at(0, size)
        except Exception as exc:
            reason, hint = _failure(exc)
            status = "deferred" if _unresolved(exc) else "failed"
            if written.keys:
                reason += (
                    f" ({len(written.keys)} resources of the file were written before the "
                    "failure; loading it again writes them as new versions, never twice)"
                )
            seconds = time.monotonic() - clock
            method = self._method(written)
            return FileResult(name, status, len(written.keys), method, reason, hint, seconds)
        seconds = time.monotonic() - clock
        return FileResult(name, "loaded", len(written.keys), self._method(written), seconds=seconds)

    def _method(self, written: _Written) -> str:
        return "fast" if self.fast and written.fast_only else "transaction"

    async def _load(self, path: Path, sha256: str, progress: _Bytes, written: _Written) -> None:
        if sources.is_ndjson(path):
            for lines, position in sources.ndjson_chunks(path, CHUNK):
                writes = plan.lines(lines, sha256)
                await self._resources(writes, written)
                progress.at(len(writes), position)
            return
        work = plan.plan(sources.read_json(path), sha256)
        if isinstance(work, plan.BundleWork):
            plain = plan.plain_writes(work) if self.fast else None
            if plain is not None:
                patients = await self.fast_writer.write(plain)
                written.add([w.key for w in plain], patients)
            else:
                written.fast_only = False
                try:
                    written.add(await self.transaction_writer.bundle(work))
                except Refused as exc:
                    written.add(exc.written)
                    raise
            progress.at(len(written.keys), progress.size)
            return
        done = 0
        for chunk in plan.chunks(work, CHUNK):
            await self._resources(chunk, written)
            done += len(chunk)
            progress.at(len(chunk), progress.size * done // max(len(work), 1))

    async def _resources(self, writes: list[plan.Write], written: _Written) -> None:
        written.fast_only = written.fast_only and self.fast
        for chunk in plan.chunks(writes, CHUNK):
            # A topic is committed, and offered, before a Subscription after it is checked.
            for run in subscriptions.runs(chunk):
                patients = None
                if self.fast:
                    patients = await self.fast_writer.write(run)
                else:
                    await self.transaction_writer.resources(run)
                written.add([w.key for w in run], patients)

    async def _describe(
        self, path: str, sha256: str, started: datetime, written: _Written
    ) -> hooks.LoadRecord | None:
        """The access-log record of what a file wrote (None if it wrote nothing)."""
        if not written.keys:
            return None
        try:
            patients = (
                sorted(written.patients) if written.fast_only else await self._patients(written)
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            # The database is gone as well: this log line is all the record there can be.
            log.exception(
                "the patients of a load could not be read for its record",
                path=path,
                keys=[f"{kind}/{id}" for kind, id in written.keys],
            )
            patients = []
        types = Counter(k[0] for k in written.keys)
        return hooks.LoadRecord(
            path,
            sha256,
            self._method(written),
            started,
            datetime.now(UTC),
            dict(sorted(types.items())),
            patients,
        )

    async def _record(self, record: hooks.LoadRecord | None) -> None:
        if record is None:
            return
        hooks.record_load(self.ctx, record)
        if "SearchParameter" in record.resources:
            # What a SearchParameter written through the API does (flode.api.routes): the next
            # files are indexed with it.
            await self.services.parameters.refresh()

    async def _patients(self, written: _Written) -> list[str]:
        """The Patients whose compartments the written resources are in, as stored now."""
        rows = await self.services.store.pool.fetch(
            """SELECT DISTINCT c.compartment_id FROM unnest($1::text[], $2::text[])
                   AS k (resource_type, id)
               JOIN resource r ON r.resource_type = k.resource_type AND r.id = k.id
               JOIN resource_compartment c
                 ON c.resource_pk = r.pk AND c.compartment_type = 'Patient'
               ORDER BY 1""",
            [k[0] for k in written.keys],
            [k[1] for k in written.keys],
        )
        return [row[0] for row in rows]


def _identify(path: Path) -> tuple[int, str]:
    """The size and SHA-256 of a file."""
    try:
        return path.stat().st_size, sources.digest(path)
    except OSError as exc:
        raise SourceError(f"cannot be read: {exc}") from None


def _unresolved(exc: Exception) -> bool:
    """Whether a conditional reference matched nothing, or a Subscription's topic is not
    offered: loading the file again after the others may resolve it."""
    error = exc.error if isinstance(exc, Invalid) else exc
    if isinstance(exc, Refused) and exc.waits_for_topic:
        return True
    if isinstance(error, FhirError) and subscriptions.waits_for_topic(error):
        return True
    status = error.status if isinstance(error, FhirError | Refused) else None
    return status == 412 and "conditional reference" in str(error) and "matches no " in str(error)


def _failure(exc: Exception) -> tuple[str, str]:
    """Why a file failed, and what to do about it."""
    if isinstance(exc, SourceError):
        message = str(exc)
        whole = not message.startswith(("line ", "Bundle"))
        return (f"The file {message}" if whole else message), FIX_FILE
    if isinstance(exc, Invalid):
        write = exc.write
        where = f"{write.where} ({write.resource_type}/{write.id})"
        return f"{where}: {describe(exc.error)}", FIX_RESOURCE
    if isinstance(exc, Refused):
        return str(exc), FIX_RESOURCE
    if isinstance(exc, FhirError):
        return describe(exc), FIX_RESOURCE
    if isinstance(exc, asyncpg.PostgresError):
        return f"The database refused the write: {exc}", CHECK_DATABASE
    if isinstance(exc, OSError | asyncpg.InterfaceError):
        return f"The connection to the database failed: {exc}", CHECK_DATABASE
    log.exception("unexpected error while loading a file")
    return f"Unexpected error: {type(exc).__name__}: {exc}", SEE_LOG
