"""Index rows are written with each version, replaced by the next and removed by a delete."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from flode.fhir import json
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.indexer import Indexer


async def index_rows(database_url: str, resource_type: str, id: str) -> dict[str, set[Any]]:
    conn = await asyncpg.connect(database_url)
    try:
        pk = await conn.fetchval(
            "SELECT pk FROM resource WHERE resource_type = $1 AND id = $2", resource_type, id
        )
        strings = await conn.fetch(
            "SELECT param, value FROM search_string WHERE resource_pk = $1", pk
        )
        dates = await conn.fetch("SELECT param, low FROM search_date WHERE resource_pk = $1", pk)
        compartments = await conn.fetch(
            "SELECT compartment_id FROM resource_compartment WHERE resource_pk = $1", pk
        )
        references = await conn.fetch(
            "SELECT param, target_type, target_id FROM search_reference WHERE resource_pk = $1",
            pk,
        )
    finally:
        await conn.close()
    return {
        "string": {(r["param"], r["value"]) for r in strings},
        "date": {(r["param"], r["low"].date().isoformat()) for r in dates},
        "compartment": {r["compartment_id"] for r in compartments},
        "reference": {(r["param"], r["target_type"], r["target_id"]) for r in references},
    }


async def test_a_write_indexes_the_resource_and_an_update_replaces_its_rows(
    client: httpx.AsyncClient, database_url: str
) -> None:
    id = f"ix-{uuid.uuid4()}"
    patient = {
        "resourceType": "Patient",
        "id": id,
        "name": [{"family": "Östersund", "given": ["Åsa"]}],
        "birthDate": "1964-08-23",
    }
    assert (await client.put(f"Patient/{id}", json=patient)).status_code == 201
    rows = await index_rows(database_url, "Patient", id)
    assert ("family", "ostersund") in rows["string"]
    assert ("given", "asa") in rows["string"]
    assert ("birthdate", "1964-08-23") in rows["date"]
    assert rows["compartment"] == {id}

    patient["name"] = [{"family": "Berg"}]
    assert (await client.put(f"Patient/{id}", json=patient)).status_code == 200
    rows = await index_rows(database_url, "Patient", id)
    assert ("family", "berg") in rows["string"]
    assert ("family", "ostersund") not in rows["string"]

    assert (await client.delete(f"Patient/{id}")).status_code == 204
    rows = await index_rows(database_url, "Patient", id)
    assert rows == {"string": set(), "date": set(), "compartment": set(), "reference": set()}


async def test_an_observation_is_in_its_subjects_compartment(
    client: httpx.AsyncClient, database_url: str
) -> None:
    patient = await client.post("Patient", json={"resourceType": "Patient"})
    patient_id = patient.json()["id"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    created = await client.post("Observation", json=observation)
    assert created.status_code == 201
    rows = await index_rows(database_url, "Observation", created.json()["id"])
    assert rows["compartment"] == {patient_id}
    assert ("subject", "Patient", patient_id) in rows["reference"]
    assert ("patient", "Patient", patient_id) in rows["reference"]


def test_every_official_example_type_can_be_indexed_without_error() -> None:
    """The indexer evaluates every parameter of a type; the in-repository examples cover
    several types, nested elements, composites and choice types."""
    indexer = Indexer(SearchParameters.load(Definitions.load()))
    folder = Path(__file__).resolve().parents[1] / "data" / "fhir-examples"
    for path in sorted(folder.glob("*.json")):
        rows = indexer.rows(json.loads(path.read_bytes()))
        assert rows.tables, path.name
