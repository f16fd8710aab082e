"""A load worker: one process (one per core), with its own connections and its own copy of the
FHIR definitions, loading files until none is left.

Workers take the next file from a shared counter and tell the parent what happens over a
queue of plain tuples: `("start", worker, index)`, `("progress", index, resources, bytes)`,
`("done", worker, index, result)`, `("log", line)` (their log lines, which the parent prints
above its progress bar) and `("fatal", worker, message)` if one cannot start.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import structlog
import uvloop

from flode import logs
from flode.app import build_services
from flode.config import Config
from flode.context import RequestContext
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.load import subscriptions
from flode.load.files import FileLoader

# Objects (that the cyclic collector tracks) allocated and not freed since its last run, past
# which it runs again between files: the cycles of a failed file (its exception, its frames)
# hold its whole document, some hundred thousand objects.
LEFT_BEHIND = 100_000


class Events(Protocol):
    def put(self, obj: Any, block: bool = ..., timeout: float | None = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str
    data_dir: Path
    """Flöde's data directory, as `flode serve` on this database has it."""
    fast: bool
    force: bool
    concurrency: int
    """Files one worker loads at once: one computes while the other waits for the database."""
    json_logs: bool


class _Lines:
    """A file that hands each log line to the parent process."""

    def __init__(self, events: Events) -> None:
        self.events = events

    def write(self, data: str | bytes) -> int:
        text = data.decode() if isinstance(data, bytes) else data
        if text.strip():
            self.events.put(("log", text.rstrip("\n")))
        return len(data)

    def flush(self) -> None:
        pass


def run(
    worker: int,
    settings: Settings,
    paths: list[str],
    counter: Synchronized[int],
    events: Events,
) -> None:
    """The worker process's main function."""
    # Ctrl-C reaches the whole process group; the parent decides and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker has the parent's handlers: SIGTERM (the parent stopping it) ends it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logs.configure(json_lines=settings.json_logs)
    lines: Any = _Lines(events)
    factory: Any = (
        structlog.BytesLoggerFactory(lines)
        if settings.json_logs
        else structlog.PrintLoggerFactory(lines)
    )
    structlog.configure(logger_factory=factory)
    try:
        uvloop.run(_work(worker, settings, paths, counter, events))
    except Exception as exc:
        events.put(("fatal", worker, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


def _take(counter: Synchronized[int], total: int) -> int | None:
    with counter.get_lock():
        index = counter.value
        if index >= total:
            return None
        counter.value = index + 1
    return index


def warm() -> None:
    """Read the FHIR definitions and compile the search parameters, once, into this process:
    workers forked from it have them (flode.load.runner) and start at once."""
    definitions = Definitions.load()
    SearchParameters.load(definitions)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Keep the session when a connection returns to the pool: the loader changes nothing in
    it that needs undoing, and resetting is a round trip per transaction."""


@asynccontextmanager
async def open_loader(settings: Settings) -> AsyncIterator[FileLoader]:
    """A file loader over a pool of its own, wired as `flode serve` wires its services."""
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=1,
        max_size=settings.concurrency + 1,
        server_settings={"jit": "off"},
        reset=_no_reset,
    )
    assert pool is not None
    try:
        services = build_services(pool, replace(Config(), data_dir=settings.data_dir))
        await services.parameters.refresh()
        await subscriptions.read_topics(services)  # the Subscriptions loaded may name them
        ctx = RequestContext.system("load")
        yield FileLoader(services, ctx, fast=settings.fast, force=settings.force)
    finally:
        await pool.close()


async def _work(
    worker: int,
    settings: Settings,
    paths: list[str],
    counter: Synchronized[int],
    events: Events,
) -> None:
    async with open_loader(settings) as loader:
        # Many parsed resources alive at once make the cyclic collector the main cost
        # (DESIGN.md): it is paused, and run between files once what the files left behind
        # has grown (a file leaves no cycles when it loads, so most files need none: a
        # collection costs up to tens of milliseconds and finds nothing).
        gc.collect()
        gc.freeze()
        gc.disable()

        async def loading() -> None:
            while (index := _take(counter, len(paths))) is not None:
                events.put(("start", worker, index))

                def report(resources: int, size: int, index: int = index) -> None:
                    events.put(("progress", index, resources, size))

                result = await loader.load(Path(paths[index]), report)
                events.put(("done", worker, index, asdict(result)))
                if gc.get_count()[0] > LEFT_BEHIND:
                    gc.collect()

        await asyncio.gather(*(loading() for _ in range(settings.concurrency)))
