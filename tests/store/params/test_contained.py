"""Contained resources are indexed as resources of their own type under keys of their own
(`resource_contained`), replaced with their container's rows
(https://hl7.org/fhir/R4/search.html#contained)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.indexer import DELETE_STATEMENT, Indexer, insert_statement


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return Indexer(SearchParameters.load(Definitions.load()))


async def write(conn: asyncpg.Connection, indexer: Indexer, resource: dict[str, Any]) -> int:
    pk: int = await conn.fetchval(
        """INSERT INTO resource (resource_type, id, version, last_updated)
           VALUES ($1, $2, 1, now()) RETURNING pk""",
        resource["resourceType"],
        resource["id"],
    )
    statement = insert_statement(pk, resource["resourceType"], indexer.rows(resource))
    assert statement is not None
    await conn.execute(statement[0], *statement[1])
    return pk


CONDITION = {
    "resourceType": "Condition",
    "id": "with-contained",
    "code": {"text": "ont i magen"},
    "contained": [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Åberg"}]},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Dubblett"}]},
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Lind"}]},
        {"resourceType": "Patient", "name": [{"family": "Utan id"}]},
    ],
}


def test_a_resource_without_contained_resources_has_no_contained_rows(indexer: Indexer) -> None:
    rows = indexer.rows({"resourceType": "Patient", "id": "x", "name": [{"family": "Berg"}]})
    assert rows.contained == ()


def test_each_contained_resource_with_an_id_is_indexed_as_its_own_type(indexer: Indexer) -> None:
    contained = indexer.rows(CONDITION).contained
    # The first of a repeated id counts; one without an id cannot be referred to.
    assert [(c.resource_type, c.id) for c in contained] == [
        ("Patient", "p1"),
        ("Practitioner", "dr"),
    ]
    assert ("family", "aberg", "Åberg") in contained[0].tables["search_string"]


async def test_contained_rows_are_keyed_apart_from_resources_and_removed_with_the_container(
    conn: asyncpg.Connection, indexer: Indexer
) -> None:
    pk = await write(conn, indexer, CONDITION)
    keys = await conn.fetch(
        "SELECT pk, resource_type, id FROM resource_contained WHERE container_pk = $1 ORDER BY id",
        pk,
    )
    assert [(k["resource_type"], k["id"]) for k in keys] == [
        ("Practitioner", "dr"),
        ("Patient", "p1"),
    ]
    assert all(k["pk"] < 0 for k in keys)
    patient = next(k["pk"] for k in keys if k["id"] == "p1")
    strings = await conn.fetch(
        "SELECT resource_type, param, value FROM search_string WHERE resource_pk = $1", patient
    )
    assert {tuple(s) for s in strings} >= {("Patient", "family", "aberg")}
    # The container's own rows are its own: none of the contained Patient's.
    own = await conn.fetch(
        "SELECT DISTINCT resource_type FROM search_string WHERE resource_pk = $1", pk
    )
    assert {o["resource_type"] for o in own} <= {"Condition"}

    await conn.execute(DELETE_STATEMENT, pk)
    assert (
        await conn.fetchval("SELECT count(*) FROM resource_contained WHERE container_pk = $1", pk)
        == 0
    )
    left = await conn.fetchval(
        "SELECT count(*) FROM search_string WHERE resource_pk = ANY($1::bigint[])",
        [pk, *(k["pk"] for k in keys)],
    )
    assert left == 0
