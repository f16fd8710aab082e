"""A migrated database of its own per test module, and a small index writer/searcher over it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest

from flode.store.migrate import migrate
from flode.store.sql import Args

Search = Callable[[str, str | None, str, Args], str]


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    name = f"params_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    connection = await asyncpg.connect(database_url, database=name)
    await migrate(connection)
    try:
        yield connection
    finally:
        await connection.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


class Index:
    """Writes `resource` rows with index rows as a module's `rows` makes them, and runs a
    module's predicate as `SELECT r.id FROM resource r WHERE …`."""

    def __init__(self, conn: asyncpg.Connection, table: str, columns: Sequence[str]) -> None:
        self.conn, self.table, self.columns = conn, table, columns

    async def add(self, id: str, param: str, rows: Sequence[tuple[Any, ...]]) -> None:
        pk = await self.conn.fetchval(
            """INSERT INTO resource (resource_type, id, version, last_updated)
               VALUES ('Observation', $1, 1, now())
               ON CONFLICT (resource_type, id) DO UPDATE SET version = resource.version
               RETURNING pk""",
            id,
        )
        names = ", ".join(self.columns)
        places = ", ".join(f"${n + 3}" for n in range(len(self.columns)))
        await self.conn.executemany(
            f"INSERT INTO {self.table} (resource_pk, resource_type, param, {names}) "
            f"VALUES ($1, 'Observation', $2, {places})",
            [(pk, param, *row) for row in rows],
        )

    async def ids(
        self, search: Search, param: str, raw: str, modifier: str | None = None
    ) -> set[str]:
        args = Args("Observation")
        where = search(param, modifier, raw, args)
        sql = f"SELECT r.id FROM resource r WHERE r.resource_type = $1 AND {where}"
        return {row["id"] for row in await self.conn.fetch(sql, *args.values)}


@pytest.fixture
async def clean(conn: asyncpg.Connection) -> asyncpg.Connection:
    await conn.execute(
        "TRUNCATE resource, resource_version, search_token, search_string, search_date, "
        "search_quantity, search_reference, search_uri, search_composite, resource_compartment, "
        "access_fact"
    )
    return conn
