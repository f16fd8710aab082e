"""Schema migrations: applied once, in order, recorded with a checksum; edits refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from flode.store.migrate import Migration, MigrationError, bundled_migrations, migrate


@pytest.fixture
async def fresh_db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An empty database of its own on the session's PostgreSQL."""
    name = f"migrate_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    conn = await asyncpg.connect(database_url, database=name)
    try:
        yield conn
    finally:
        await conn.close()
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


def test_bundled_migrations_are_numbered_without_gaps() -> None:
    numbers = [m.number for m in bundled_migrations()]
    assert numbers == list(range(1, len(numbers) + 1))


async def test_applies_every_migration_once_and_records_its_checksum(
    fresh_db: asyncpg.Connection,
) -> None:
    migrations = bundled_migrations()
    assert await migrate(fresh_db) == len(migrations)
    assert await migrate(fresh_db) == 0
    rows = await fresh_db.fetch("SELECT number, checksum FROM schema_migration ORDER BY number")
    assert [(r["number"], r["checksum"]) for r in rows] == [
        (m.number, m.checksum) for m in migrations
    ]


async def test_refuses_to_start_when_an_applied_migration_was_edited(
    fresh_db: asyncpg.Connection,
) -> None:
    first = Migration(1, "0001_things.sql", "CREATE TABLE thing (id int)")
    await migrate(fresh_db, [first])
    edited = Migration(1, "0001_things.sql", "CREATE TABLE thing (id bigint)")
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        await migrate(fresh_db, [edited])


async def test_refuses_a_database_migrated_by_a_newer_version(
    fresh_db: asyncpg.Connection,
) -> None:
    one = Migration(1, "0001_a.sql", "CREATE TABLE a (id int)")
    two = Migration(2, "0002_b.sql", "CREATE TABLE b (id int)")
    await migrate(fresh_db, [one, two])
    with pytest.raises(MigrationError, match="newer version"):
        await migrate(fresh_db, [one])


async def test_a_failing_migration_leaves_nothing_half_applied(
    fresh_db: asyncpg.Connection,
) -> None:
    one = Migration(1, "0001_a.sql", "CREATE TABLE a (id int)")
    broken = Migration(2, "0002_b.sql", "CREATE TABLE b (id int); SELECT no_such_function()")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(fresh_db, [one, broken])
    tables = await fresh_db.fetchval("SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b')")
    assert tables == 0
