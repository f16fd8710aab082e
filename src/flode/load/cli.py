"""`flode load`: which database, the load itself, and what it says at the end."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click
from rich.console import Console
from rich.table import Table

from flode.config import Config
from flode.load import runner, sources
from flode.load.files import FileResult
from flode.store.embedded import EmbeddedPostgres
from flode.store.migrate import MigrationError, migrate

# Exit codes: every file loaded or skipped; some failed; nothing could be loaded; interrupted.
OK, FAILED, UNAVAILABLE, INTERRUPTED = 0, 1, 2, 130
CONNECT_TIMEOUT = 10.0


class Unavailable(Exception):
    """The database cannot be used; the message says why and what to do."""


def run(
    paths: Sequence[Path],
    *,
    data_dir: Path | None,
    database_url: str | None,
    options: runner.Options,
) -> int:
    """Load `paths` and report; the exit code."""
    # SIGTERM stops a load as Ctrl-C does: workers stopped, the embedded PostgreSQL let go.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    err = Console(stderr=True)
    out = Console()
    if data_dir is not None and database_url is not None:
        raise click.UsageError("give either --data-dir or --database-url, not both")
    config = Config()
    url = database_url or (None if data_dir else config.database_url)
    folder = data_dir or config.data_dir
    embedded = None
    try:
        if url is None:
            embedded = EmbeddedPostgres(folder)
            with err.status(f"Starting (or joining) the embedded PostgreSQL in {folder}…"):
                url = _start(embedded)
            where = f"the embedded PostgreSQL in {folder}"
        else:
            where = _safe(url)
        asyncio.run(_prepare(url))
        files, missing = sources.find(paths)
        mode = "fast path (COPY)" if options.fast else "transactions"
        err.print(
            f"Loading {len(files)} files into {where} through {mode}, "
            f"{min(options.workers, max(len(files), 1))} workers.",
            highlight=False,
        )
        outcome = runner.run(url, folder, files, options, err)
    except Unavailable as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        return UNAVAILABLE
    except KeyboardInterrupt:
        err.print("[red]Interrupted before loading began; nothing was loaded.[/red]")
        return INTERRUPTED
    finally:
        if embedded is not None:
            embedded.stop()
    failed = [
        FileResult(str(m.path), "failed", reason=m.reason, hint="Check the path.") for m in missing
    ]
    _summary(out, outcome, failed)
    if outcome.interrupted:
        return INTERRUPTED
    return FAILED if failed or outcome.count("failed") else OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _start(embedded: EmbeddedPostgres) -> str:
    try:
        return embedded.start()
    except Exception as exc:
        raise Unavailable(
            f"The embedded PostgreSQL in {embedded.pgdata} could not be started: {exc}"
        ) from None


def _safe(url: str) -> str:
    """The URL without its password, to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def _prepare(url: str) -> None:
    """Check that the database can be reached and bring its schema up to date."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unavailable(
            f"Cannot connect to the database at {_safe(url)}: {exc or type(exc).__name__}. "
            "Check --database-url (or FLODE_DATABASE_URL) and that PostgreSQL is running; "
            "nothing was loaded."
        ) from None
    try:
        await migrate(conn)
    except MigrationError as exc:
        raise Unavailable(f"The database schema cannot be brought up to date: {exc}") from None
    finally:
        await conn.close()


def _summary(out: Console, outcome: runner.Outcome, missing: list[FileResult]) -> None:
    failed = missing + [r for r in outcome.results if r.status == "failed"]
    table = Table(title="flode load", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files loaded", f"{outcome.count('loaded'):,}")
    table.add_row("files skipped (loaded before)", f"{outcome.count('skipped'):,}")
    table.add_row("files failed", f"{len(failed):,}", style="red" if failed else None)
    if outcome.interrupted:
        table.add_row("files not loaded (interrupted)", f"{outcome.count('interrupted'):,}")
    table.add_row("resources written", f"{outcome.resources:,}")
    table.add_row("seconds", f"{outcome.seconds:,.1f}")
    table.add_row("resources/s", f"{outcome.rate:,.0f}")
    out.print(table)
    if outcome.interrupted:
        out.print(
            "Interrupted. Run the same command again to load the rest: files loaded before are "
            "skipped, and resources are written by id, never twice.",
            highlight=False,
        )
    if not failed:
        return
    problems = Table(title="Files that failed", title_justify="left", show_lines=True)
    problems.add_column("file", overflow="fold")
    problems.add_column("why", overflow="fold")
    problems.add_column("what to do", overflow="fold")
    for result in failed:
        problems.add_row(result.path, result.reason, result.hint)
    out.print(problems)
    out.print(
        "The other files were loaded. Fix the files above and run the same command again: "
        "files loaded before are skipped, and resources are written by id, never twice.",
        highlight=False,
    )
