"""Loading a Synthea data set into a benchmark server over HTTP: every resource as
`PUT /fhir/{type}/{id}` on concurrent keep-alive connections, with a progress bar.

A loaded data directory is kept in a cache and reused by later runs. Its name says which data
set it holds (size, source bundles, how copies are made). New migrations are applied to it when
the server starts, as they would be in production; if a migration it was loaded with has since
been edited (which the server refuses), the set is loaded afresh.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from benchmarks import synthea
from benchmarks.loadgen import HOST, read_response, request
from flode.store.migrate import bundled_migrations

_MARKER = "loaded.json"
_MAX_ERRORS = 20
_STREAM_LIMIT = 1 << 20


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flode-bench"


def migrations() -> dict[str, str]:
    return {m.name: m.checksum for m in bundled_migrations()}


def data_dir(cache: Path, patients: int) -> Path:
    """Where the `patients`-patient set is (or will be) loaded."""
    return cache / f"synthea-{patients}-{synthea.fingerprint(patients)}"


def _marker(directory: Path) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = orjson.loads((directory / _MARKER).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return found


def is_loaded(directory: Path) -> bool:
    """Loaded completely, and with migrations that are still as they were (the server refuses a
    database whose applied migrations were edited afterwards)."""
    marker = _marker(directory)
    if marker is None:
        return False
    now = migrations()
    return all(now.get(name) == checksum for name, checksum in marker["migrations"].items())


def prepare(directory: Path) -> None:
    """Make room for a fresh load: remove what is there, and other loads of the same size (of
    other source data)."""
    if directory.exists():
        shutil.rmtree(directory)
    prefix = directory.name.rsplit("-", 1)[0] + "-"
    for stale in directory.parent.glob(prefix + "*"):
        if stale != directory and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def mark_loaded(directory: Path, resources: int, seconds: float) -> None:
    """Record a complete load, and the migrations the database now has applied."""
    (directory / _MARKER).write_bytes(
        orjson.dumps({"resources": resources, "seconds": seconds, "migrations": migrations()})
    )


def mark_migrated(directory: Path) -> None:
    """After a start, which applies new migrations: record them too."""
    marker = _marker(directory)
    if marker is not None:
        mark_loaded(directory, marker["resources"], marker["seconds"])


@dataclass(slots=True)
class LoadResult:
    loaded: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    error_samples: list[str] = field(default_factory=list)


async def _worker(
    port: int,
    entries: Iterator[synthea.Entry],
    result: LoadResult,
    progress: Progress,
    task: TaskID,
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port, limit=_STREAM_LIMIT)
    try:
        for entry in entries:
            path = f"/fhir/{entry.resource_type}/{entry.id}"
            writer.write(request("PUT", path, port, entry.body))
            status, _, body, keep_alive = await read_response(reader)
            if status in (200, 201):
                result.loaded += 1
            else:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(f"PUT {path}: {status} {body[:300]!r}")
                if result.errors > _MAX_ERRORS:
                    raise RuntimeError("too many errors:\n" + "\n".join(result.error_samples))
            progress.advance(task)
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port, limit=_STREAM_LIMIT)
    finally:
        writer.close()


async def load(port: int, patients: int, console: Console, *, concurrency: int = 16) -> LoadResult:
    """PUT every resource of the `patients`-patient set; the workers share one iterator, so
    the data is made as it is sent."""
    total = synthea.count(patients)
    entries = synthea.dataset(patients)
    result = LoadResult()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"Loading {patients} patients", total=total, rate="")

        async def report() -> None:
            ticks = 0
            while True:
                await asyncio.sleep(1)
                ticks += 1
                rate = result.loaded / max(time.perf_counter() - started, 1e-9)
                progress.update(task, rate=f"{rate:,.0f}/s")
                if not console.is_terminal and ticks % 30 == 0:
                    # No live bar in a log file: a line every 30 s instead.
                    console.print(f"{result.loaded:,} of {total:,} loaded, {rate:,.0f}/s")

        reporter = asyncio.create_task(report())
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(_worker(port, entries, result, progress, task))
        finally:
            reporter.cancel()
    result.elapsed_s = time.perf_counter() - started
    return result
