"""`flode load`: which database, the load itself, and what it says at the end."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.table import Table

from flode.config import Config
from flode.load import runner, sources, worker
from flode.load.files import FileResult
from flode.store import attach

# Exit codes: every file loaded or skipped; some failed; nothing could be loaded; interrupted.
OK, FAILED, UNAVAILABLE, INTERRUPTED = 0, 1, 2, 130


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
    folder = attach.data_dir_of(data_dir)
    external = database_url or (None if data_dir else Config().database_url)
    # While PostgreSQL starts (a process of its own), this one reads what every worker needs.
    warming = threading.Thread(target=worker.warm, name="flode-load-warm", daemon=True)
    warming.start()
    try:
        with attach.database(data_dir, database_url, err) as url:
            where = attach.safe(url) if external else f"the embedded PostgreSQL in {folder}"
            asyncio.run(_prepare(url))
            warming.join()  # before the workers are forked (flode.load.runner)
            files, missing = sources.find(paths)
            mode = "fast path (COPY)" if options.fast else "transactions"
            err.print(
                f"Loading {len(files)} files into {where} through {mode}, "
                f"{min(options.workers, max(len(files), 1))} workers.",
                highlight=False,
            )
            outcome = runner.run(url, folder, files, options, err)
    except attach.Unavailable as exc:
        err.print(f"[red]{exc} Nothing was loaded.[/red]", highlight=False)
        return UNAVAILABLE
    except KeyboardInterrupt:
        err.print("[red]Interrupted before loading began; nothing was loaded.[/red]")
        return INTERRUPTED
    failed = [
        FileResult(str(m.path), "failed", reason=m.reason, hint="Check the path.") for m in missing
    ]
    _summary(out, outcome, failed)
    if outcome.interrupted:
        return INTERRUPTED
    return FAILED if failed or outcome.count("failed") else OK


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _prepare(url: str) -> None:
    """Check that the database can be reached and bring its schema up to date."""
    conn = await attach.connect(url)
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
