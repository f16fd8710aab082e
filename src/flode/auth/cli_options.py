"""What the `flode module …` and `flode token …` commands share: where the database is, and how
they print."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import click
from rich.console import Console

T = TypeVar("T")

err = Console(stderr=True)
out = Console(soft_wrap=True)

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The data directory of the server, also while `flode serve` runs on it "
    "[default: ./.flode].",
)
database_url_option = click.option(
    "--database-url",
    default=None,
    help="The server's PostgreSQL, instead of the embedded one [env: FLODE_DATABASE_URL].",
)


def with_database(
    data_dir: Path | None,
    database_url: str | None,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    from flode.store import attach

    return attach.with_database(data_dir, database_url, work, err)


def when(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "never"
