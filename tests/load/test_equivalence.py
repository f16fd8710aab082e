"""The fast path writes exactly what the transaction path writes: the same versions, the same
index rows in every table and the same outbox events, so loaded data is searchable and
announced exactly like data written through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from flode.load.files import FileLoader
from flode.load.worker import Settings, open_loader
from flode.store.indexer import TABLES
from flode.store.migrate import migrate

from .support import NDJSON, SYNTHEA, drop_database, new_database

# Loaded in this order, the conditional references of the NDJSON files all resolve.
FILES = [
    SYNTHEA / "Alfreda_Wyman_3287b938-4670-47eb-91e5-e0ce3df71405.json.gz",
    NDJSON / "Organization.000.ndjson.gz",
    NDJSON / "Location.000.ndjson.gz",
    NDJSON / "Practitioner.000.ndjson.gz",
    NDJSON / "PractitionerRole.000.ndjson.gz",
    NDJSON / "Patient.000.ndjson.gz",
    NDJSON / "Immunization.000.ndjson.gz",
]

Loader = Callable[[str, bool], AbstractAsyncContextManager[FileLoader]]


def loader(tmp_path: Path) -> Loader:
    def open_(url: str, fast: bool) -> AbstractAsyncContextManager[FileLoader]:
        return open_loader(Settings(url, tmp_path, fast, True, 1, True))

    return open_


@pytest.fixture
async def two_databases(database_url: str) -> AsyncIterator[tuple[str, str]]:
    urls = (await new_database(database_url), await new_database(database_url))
    yield urls
    for url in urls:
        await drop_database(database_url, url)


async def load(open_: Loader, url: str, fast: bool, files: list[Path]) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    async with open_(url, fast) as file_loader:
        for path in files:
            result = await file_loader.load(path, lambda resources, size: None)
            assert result.status == "loaded", result
            assert result.method == ("fast" if fast else "transaction")


def _comparable(value: Any) -> str:
    return "∅" if value is None else str(value)


async def snapshot(url: str) -> dict[str, list[tuple[str, ...]]]:
    """Every table a write fills, keyed by (type, id) instead of the storage key, with the
    times of writing left out."""
    conn = await asyncpg.connect(url)
    try:
        out: dict[str, list[tuple[str, ...]]] = {}
        resources = await conn.fetch("SELECT resource_type, id, version, deleted FROM resource")
        out["resource"] = sorted(tuple(map(_comparable, row.values())) for row in resources)
        versions = []
        for row in await conn.fetch(
            """SELECT r.resource_type, r.id, v.version, v.method, v.content
               FROM resource_version v JOIN resource r ON r.pk = v.resource_pk"""
        ):
            content = orjson.loads(row["content"])
            del content["meta"]["lastUpdated"]
            versions.append(
                (row["resource_type"], row["id"], str(row["version"]), row["method"], str(content))
            )
        out["resource_version"] = sorted(versions)
        events = await conn.fetch(
            "SELECT resource_type, resource_id, version, action, patients FROM outbox"
        )
        out["outbox"] = sorted(tuple(map(_comparable, row.values())) for row in events)
        for table in TABLES:
            rows = await conn.fetch(
                f"""SELECT r.id AS resource_id, t.* FROM {table} t
                    JOIN resource r ON r.pk = t.resource_pk"""
            )
            out[table] = sorted(
                tuple(_comparable(v) for k, v in row.items() if k != "resource_pk") for row in rows
            )
        return out
    finally:
        await conn.close()


async def test_a_load_through_copy_indexes_every_table_as_transactions_do(
    two_databases: tuple[str, str], tmp_path: Path
) -> None:
    fast, slow = two_databases
    open_ = loader(tmp_path)
    await load(open_, fast, True, FILES)
    await load(open_, slow, False, FILES)
    written, expected = await snapshot(fast), await snapshot(slow)
    assert len(expected["resource"]) == 138 + 43 + 44 + 43 + 43 + 13 + 161
    for table in (*TABLES, "outbox"):
        assert expected[table], f"the data fills {table}"
    assert written == expected


async def test_resources_that_exist_already_get_their_next_version_on_the_fast_path(
    two_databases: tuple[str, str], tmp_path: Path
) -> None:
    fast, slow = two_databases
    open_ = loader(tmp_path)
    for url in two_databases:
        await load(open_, url, False, FILES[:1])
    await load(open_, fast, True, FILES[:1])
    await load(open_, slow, False, FILES[:1])
    written = await snapshot(fast)
    assert {row[2] for row in written["resource"]} == {"2"}
    assert written == await snapshot(slow)
