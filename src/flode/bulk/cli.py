"""`flode export DIR`: a system-level export straight from the database into a folder, with
progress, in the files and manifest `$export` would serve (docs/bulk-data.md). Patients with
protected identity are masked in it unless `--unmask-protected` is given
(docs/protected-identity.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flode.access.protected import MASK_ALL, UNMASKED, Masking
from flode.bulk import selection as sel
from flode.bulk.ndjson import NdjsonFiles
from flode.bulk.run import Cursor
from flode.bulk.run import run as run_export
from flode.fhir.dates import format_instant, parse_instant
from flode.fhir.definitions import Definitions
from flode.fhir.errors import FhirError
from flode.store import attach

OK, UNAVAILABLE = 0, 2
MANIFEST = "manifest.json"


def run(
    directory: Path,
    *,
    data_dir: Path | None,
    database_url: str | None,
    types: Sequence[str],
    since: str | None,
    max_file_bytes: int,
    unmask_protected: bool = False,
) -> int:
    """Export into `directory`; the exit code."""
    err = Console(stderr=True)
    if data_dir is not None and database_url is not None:
        raise click.UsageError("give either --data-dir or --database-url, not both")
    known = Definitions.load().resource_types
    wanted = [t.strip() for value in types for t in value.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise click.UsageError(f"not FHIR R4 resource types: {', '.join(unknown)}")
    try:
        since_at = None if since is None else parse_instant(since, "--since")
    except FhirError as exc:
        raise click.UsageError(str(exc)) from None
    if directory.exists() and any(directory.iterdir()):
        raise click.UsageError(f"{directory} is not empty: export into a new or empty folder")
    try:
        with attach.database(data_dir, database_url, err) as url:
            selection = sel.Selection(
                level="system",
                types=tuple(dict.fromkeys(wanted)) if wanted else tuple(sorted(known)),
                transaction_time=datetime.now(UTC),
                since=since_at,
            )
            files = NdjsonFiles(directory, max_file_bytes)
            masking = UNMASKED if unmask_protected else MASK_ALL
            asyncio.run(_export(url, selection, files, err, masking))
    except attach.Unavailable as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        return UNAVAILABLE
    return OK


async def _export(
    url: str, selection: sel.Selection, files: NdjsonFiles, err: Console, masking: Masking
) -> None:
    conn = await attach.connect(url)
    started = time.monotonic()
    try:
        files.directory.mkdir(parents=True, exist_ok=True)
        with Progress(
            TextColumn("[bold]{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} resources/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        ) as progress:
            task = progress.add_task("counting", total=None, rate="")
            total = 0
            for resource_type in selection.types:
                total += await sel.count(conn, selection, resource_type)
            progress.update(task, total=total, description="exporting")
            async for step in run_export(conn, selection, files, Cursor(), masking=masking):
                index = min(step.cursor.type_index, len(selection.types) - 1)
                rate = step.cursor.done / max(time.monotonic() - started, 1e-6)
                progress.update(
                    task,
                    completed=step.cursor.done,
                    description=selection.types[index],
                    rate=f"{rate:,.0f}",
                )
            progress.update(task, description="done")
    finally:
        await conn.close()
    seconds = time.monotonic() - started
    manifest = _manifest(selection, files)
    (files.directory / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    _summary(err, files, seconds)


def _manifest(selection: sel.Selection, files: NdjsonFiles) -> dict[str, Any]:
    """The manifest `$export` would answer with, the files named relative to it."""
    request = "flode export"
    if selection.since is not None:
        request += f" --since {format_instant(selection.since)}"

    def items(kind: str) -> list[dict[str, Any]]:
        return [
            {"type": f.type, "url": f.name, "count": f.count} for f in files.files if f.kind == kind
        ]

    body: dict[str, Any] = {
        "transactionTime": format_instant(selection.transaction_time),
        "request": request,
        "requiresAccessToken": False,
        "output": items("output"),
    }
    if selection.since is not None:
        body["deleted"] = items("deleted")
    body["error"] = []
    return body


def _summary(err: Console, files: NdjsonFiles, seconds: float) -> None:
    count = sum(f.count for f in files.files if f.kind == "output")
    size = sum(f.bytes for f in files.files)
    table = Table(title="flode export", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("folder", str(files.directory))
    table.add_row("files", f"{len(files.files):,}")
    table.add_row("resources", f"{count:,}")
    table.add_row("megabytes", f"{size / 1e6:,.1f}")
    table.add_row("seconds", f"{seconds:,.1f}")
    table.add_row("resources/s", f"{count / max(seconds, 1e-6):,.0f}")
    err.print(table)
