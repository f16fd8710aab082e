"""`flode events prune`: remove, with progress, the change feed rows every consumer is done
with and the subscription events and delivery attempts older than the retention
(flode.events.retention, docs/events.md). It works beside a running `flode serve`, on the
database `--data-dir` or `--database-url` names; the dispatchers also prune every hour."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from flode.events import retention
from flode.store import attach

OK, BUSY = 0, 1
LABELS = {
    retention.OUTBOX: "outbox rows",
    retention.EVENTS: "subscription events",
    retention.ATTEMPTS: "delivery attempts",
}

err = Console(stderr=True)


async def prune_events(conn: asyncpg.Connection, days: int, publishing: bool) -> int:
    """Prune with a progress bar per step; the exit code."""
    with Progress(
        TextColumn("[bold]{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
    ) as bars:
        tasks: dict[str, TaskID] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bars.add_task(LABELS.get(step, step), total=total)
            bars.update(tasks[step], completed=done, total=total)

        pruned = await retention.prune(conn, days, publishing=publishing, progress=progress)
    if pruned is None:
        err.print(
            "Another prune is running (a server's dispatcher, or another `flode events "
            "prune`); nothing was removed.",
            highlight=False,
        )
        return BUSY
    counts = [f"{n:,} {LABELS[step]}" for step, n in pruned.removed.items()]
    err.print(
        f"Removed {', '.join(counts[:-1])} and {counts[-1]}; each subscription keeps its events "
        f"and delivery attempts from {pruned.cutoff:%Y-%m-%d %H:%M} UTC on.",
        highlight=False,
    )
    return OK


@click.group()
def events() -> None:
    """The change feed and the subscriptions' events (docs/events.md)."""


@events.command()
@click.option(
    "--retention-days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many days [default: FLODE_EVENTS_RETENTION_DAYS, or 30].",
)
@attach.data_dir_option
@attach.database_url_option
def prune(retention_days: int | None, data_dir: Path | None, database_url: str | None) -> None:
    """Remove the change feed rows every subscription (and NATS) is done with, and each
    subscription's events and delivery attempts older than the retention."""
    from flode.config import Config

    config = Config()
    days = retention_days if retention_days is not None else config.events_retention_days
    publishing = config.nats_url is not None
    sys.exit(
        attach.with_database(
            data_dir, database_url, lambda conn: prune_events(conn, days, publishing), err
        )
    )
