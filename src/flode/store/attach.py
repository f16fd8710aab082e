"""How a command-line tool reaches Flöde's database, also while `flode serve` runs on it: the
PostgreSQL named by `--database-url` (or FLODE_DATABASE_URL), else the embedded one in
`--data-dir` (started, or joined when a server runs on it, and let go afterwards)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import click
from rich.console import Console

from flode.store.embedded import EmbeddedPostgres
from flode.store.migrate import MigrationError, migrate

CONNECT_TIMEOUT = 10.0
UNAVAILABLE = 2
"""The exit code of a command whose database cannot be reached."""
T = TypeVar("T")


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The embedded PostgreSQL's data directory, also while `flode serve` runs on it "
    "[default: ./.flode].",
)
database_url_option = click.option(
    "--database-url",
    default=None,
    help="The server's PostgreSQL, instead of the embedded one [env: FLODE_DATABASE_URL].",
)
"""The options of a command that works on the database (with `with_database`)."""


class Unavailable(Exception):
    """The database cannot be used; the message says why and what to do."""


def data_dir_of(data_dir: Path | None) -> Path:
    return data_dir or Path(os.environ.get("FLODE_DATA_DIR", ".flode"))


def safe(url: str) -> str:
    """The URL without its password, to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def database(
    data_dir: Path | None, database_url: str | None, console: Console | None = None
) -> Iterator[str]:
    """The URL of the database to use while the block runs."""
    url = database_url or (None if data_dir else os.environ.get("FLODE_DATABASE_URL") or None)
    if url is not None:
        yield url
        return
    folder = data_dir_of(data_dir)
    embedded = EmbeddedPostgres(folder)
    try:
        status = (console or Console(stderr=True)).status(
            f"Starting (or joining) the embedded PostgreSQL in {folder}…"
        )
        with status:
            try:
                url = embedded.start()
            except Exception as exc:
                raise Unavailable(
                    f"The embedded PostgreSQL in {embedded.pgdata} could not be started: {exc}"
                ) from None
        yield url
    finally:
        embedded.stop()


async def connect(url: str) -> asyncpg.Connection:
    """A connection to a database whose schema is up to date."""
    try:
        conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT, server_settings={"jit": "off"})
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Unavailable(
            f"Cannot connect to the database at {safe(url)}: {exc or type(exc).__name__}. "
            "Check --database-url (or FLODE_DATABASE_URL) and that PostgreSQL is running."
        ) from None
    try:
        await migrate(conn)
    except MigrationError as exc:
        await conn.close()
        raise Unavailable(f"The database schema cannot be brought up to date: {exc}") from None
    return conn


def with_database(
    data_dir: Path | None,
    database_url: str | None,
    work: Callable[[asyncpg.Connection], Awaitable[T]],
    console: Console | None = None,
) -> T:
    """Run `work(conn)` on a connection to the database (schema up to date) and return what
    it returns; say why on `console` (standard error) and exit 2 when the database cannot be
    reached."""
    console = console or Console(stderr=True)
    if data_dir is not None and database_url is not None:
        raise click.UsageError("give either --data-dir or --database-url, not both")

    async def run(url: str) -> T:
        conn = await connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        with database(data_dir, database_url, console) as url:
            return asyncio.run(run(url))
    except Unavailable as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        sys.exit(UNAVAILABLE)
