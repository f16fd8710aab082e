"""Schema migrations: applied once, in order, recorded with a checksum; edits refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from flode.access import facts
from flode.store.migrate import Migration, MigrationError, bundled_migrations, migrate
from flode.store.params import date


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


async def test_migration_0017_moves_the_access_facts_into_access_fact_as_the_indexer_writes_them(
    fresh_db: asyncpg.Connection,
) -> None:
    """Care relationships, consents and blocks written before 0017 were rows of
    search_reference and search_date; afterwards they are the rows the indexer writes now."""
    migrations = bundled_migrations()
    await migrate(fresh_db, [m for m in migrations if m.number < 17])
    hsa = "urn:oid:1.2.752.29.4.19"
    end = datetime(2026, 1, 2, tzinfo=UTC)
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "subject": {"reference": "Patient/p1"},
            "serviceProvider": {"reference": "Organization/u1"},
            "period": {"start": "2026-01-01", "end": "2026-01-01"},
        },
        {
            "resourceType": "EpisodeOfCare",
            "id": "ep1",
            "status": "active",
            "patient": {"reference": "Patient/p1"},
            "managingOrganization": {"identifier": {"system": hsa, "value": "SE-U2"}},
        },
        {
            "resourceType": "Consent",
            "id": "c1",
            "status": "active",
            "patient": {"reference": "Patient/p1"},
            "provision": {
                "type": "deny",
                "period": {"start": "2026-01-01", "end": "2026-01-01"},
                "actor": [
                    {
                        "role": {"coding": [{"system": facts.PARTICIPATION, "code": "CST"}]},
                        "reference": {"reference": "Organization/u3"},
                    }
                ],
            },
        },
        {
            "resourceType": "Consent",
            "id": "c2",
            "status": "active",
            "patient": {"reference": "Patient/p1"},
            "provision": {
                "type": "permit",
                "purpose": [{"system": facts.ACT_REASON, "code": "TREAT"}],
                "actor": [
                    {
                        "role": {"coding": [{"system": facts.PARTICIPATION, "code": "IRCP"}]},
                        "reference": {"identifier": {"system": hsa, "value": "SE-P1"}},
                    }
                ],
            },
        },
    ]
    old: dict[str, tuple[list[tuple[Any, ...]], tuple[datetime, datetime] | None]] = {
        "e1": ([("_care-relation", "Organization", "u1", None, None, None)], (date.FIRST, end)),
        "ep1": ([("_care-relation", None, None, None, hsa, "SE-U2")], (date.FIRST, date.LAST)),
        "c1": (
            [
                ("_consent-deny", "Organization", "u3", None, None, None),
                ("patient", "Patient", "p1", None, None, None),
            ],
            (datetime(2026, 1, 1, tzinfo=UTC), end),
        ),
        "c2": (
            [
                ("_consent-permit", None, None, None, hsa, "SE-P1"),
                ("patient", "Patient", "p1", None, None, None),
            ],
            None,  # no period: no date row
        ),
    }
    pks = {}
    for resource in resources:
        kind, id = resource["resourceType"], resource["id"]
        pk = await fresh_db.fetchval(
            "INSERT INTO resource (resource_type, id, version, last_updated) "
            "VALUES ($1, $2, 1, now()) RETURNING pk",
            kind,
            id,
        )
        pks[id] = pk
        references, period = old[id]
        for param, *row in references:
            await fresh_db.execute(
                "INSERT INTO search_reference (resource_pk, resource_type, param, target_type, "
                "target_id, url, identifier_system, identifier_value) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                pk,
                kind,
                param,
                *row,
            )
        if period is not None:
            await fresh_db.execute(
                "INSERT INTO search_date (resource_pk, resource_type, param, low, high) "
                "VALUES ($1, $2, $3, $4, $5)",
                pk,
                kind,
                references[0][0],
                period[0],
                period[1],
            )
        if kind != "Consent":
            await fresh_db.execute(
                "INSERT INTO resource_compartment VALUES ($1, $2, 'Patient', 'p1')", pk, kind
            )

    await migrate(fresh_db, migrations)

    rows = await fresh_db.fetch(
        "SELECT resource_pk, param, patient_id, organization, low, high FROM access_fact"
    )
    expected = [
        (pks[r["id"]], *row) for r in resources for row in facts.rows(r).get(facts.TABLE, [])
    ]
    assert len(expected) == 4
    # The driver reads the open ends (-infinity, infinity) back as naive datetime.min / max.
    assert sorted(tuple(_aware(v) for v in row) for row in rows) == sorted(expected)
    left = await fresh_db.fetchval(
        "SELECT (SELECT count(*) FROM search_reference WHERE param LIKE '\\_c%') "
        "+ (SELECT count(*) FROM search_date)"
    )
    assert left == 0


def _aware(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and not value.tzinfo else value
