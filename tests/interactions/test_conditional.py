"""Conditional create, update and delete (https://hl7.org/fhir/R4/http.html#ccreate,
#cond-update, #3.1.0.7.1): the outcome depends on how many resources match the criteria."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest


def new_system() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
        **extra,
    }


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("Patient", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def matches(client: httpx.AsyncClient, system: str) -> list[dict[str, Any]]:
    """Every current Patient with an identifier in `system`."""
    response = await client.get("Patient", params={"identifier": f"{system}|"})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


async def version_count(client: httpx.AsyncClient, id: str) -> int:
    response = await client.get(f"Patient/{id}/_history")
    return len(response.json()["entry"])


# --- conditional create (If-None-Exist) ---------------------------------------------------------


@pytest.mark.parametrize("form", ["identifier={}", "Patient?identifier={}"])
async def test_conditional_create_with_no_match_creates_and_returns_201(
    client: httpx.AsyncClient, form: str
) -> None:
    system = new_system()
    response = await client.post(
        "Patient",
        json=patient(system, "1"),
        headers={"If-None-Exist": form.format(f"{system}|1")},
    )
    assert response.status_code == 201, response.text
    assert [p["id"] for p in await matches(client, system)] == [response.json()["id"]]


async def test_conditional_create_with_one_match_returns_200_and_the_existing_resource(
    client: httpx.AsyncClient,
) -> None:
    system, value = new_system(), str(uuid.uuid4())
    existing = await created(client, patient(system, value, gender="female"))
    for criteria in (
        f"identifier={system}|{value}",
        f"identifier={value}",
        f"_id={existing['id']}",
    ):
        response = await client.post(
            "Patient",
            json=patient(system, value, gender="male"),
            headers={"If-None-Exist": criteria},
        )
        assert response.status_code == 200, (criteria, response.text)
        assert response.json() == existing
        assert response.headers["etag"] == 'W/"1"'
    assert await matches(client, system) == [existing]
    assert await version_count(client, existing["id"]) == 1


async def test_conditional_create_with_two_matches_returns_412(client: httpx.AsyncClient) -> None:
    system = new_system()
    await created(client, patient(system, "1"))
    await created(client, patient(system, "1"))
    response = await client.post(
        "Patient", json=patient(system, "1"), headers={"If-None-Exist": f"identifier={system}|"}
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert len(await matches(client, system)) == 2


@pytest.mark.parametrize(
    "criteria", ["nonsense=Svensson", "identifier:exact=1", "_count=1", "", "identifier="]
)
async def test_conditional_create_with_unsupported_criteria_returns_400_and_creates_nothing(
    client: httpx.AsyncClient, criteria: str
) -> None:
    system = new_system()
    response = await client.post(
        "Patient", json=patient(system, "1"), headers={"If-None-Exist": criteria}
    )
    assert response.status_code == 400, response.text
    assert await matches(client, system) == []


async def test_conditional_create_accepts_any_search(client: httpx.AsyncClient) -> None:
    system = new_system()
    family = f"Villkor{system[-8:]}"
    resource = {**patient(system, "1"), "name": [{"family": family}], "birthDate": "1990-01-02"}
    condition = {"If-None-Exist": f"family={family}&birthdate=1990-01-02"}
    first = await client.post("Patient", json=resource, headers=condition)
    second = await client.post("Patient", json=resource, headers=condition)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert len(await matches(client, system)) == 1


# --- conditional update (PUT Type?criteria) -------------------------------------------------


async def test_conditional_update_with_no_match_creates(client: httpx.AsyncClient) -> None:
    system = new_system()
    response = await client.put(
        "Patient", params={"identifier": f"{system}|1"}, json=patient(system, "1")
    )
    assert response.status_code == 201, response.text
    assert [p["id"] for p in await matches(client, system)] == [response.json()["id"]]


async def test_conditional_update_with_no_match_and_a_body_id_creates_that_id(
    client: httpx.AsyncClient,
) -> None:
    system, id = new_system(), str(uuid.uuid4())
    response = await client.put(
        "Patient", params={"identifier": f"{system}|1"}, json=patient(system, "1", id=id)
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] == id
    assert (await client.get(f"Patient/{id}")).status_code == 200


@pytest.mark.parametrize("with_id", [False, True])
async def test_conditional_update_with_one_match_updates_that_resource(
    client: httpx.AsyncClient, with_id: bool
) -> None:
    system = new_system()
    existing = await created(client, patient(system, "1"))
    body = patient(system, "1", gender="other", **({"id": existing["id"]} if with_id else {}))
    response = await client.put("Patient", params={"identifier": f"{system}|1"}, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["id"] == existing["id"]
    assert response.json()["meta"]["versionId"] == "2"
    (only,) = await matches(client, system)
    assert only["id"] == existing["id"]
    assert only["gender"] == "other"


async def test_conditional_update_with_two_matches_returns_412(client: httpx.AsyncClient) -> None:
    system = new_system()
    first = await created(client, patient(system, "1"))
    second = await created(client, patient(system, "2"))
    response = await client.put(
        "Patient", params={"identifier": f"{system}|"}, json=patient(system, "3")
    )
    assert response.status_code == 412
    assert await version_count(client, first["id"]) == 1
    assert await version_count(client, second["id"]) == 1


async def test_conditional_update_with_a_body_id_other_than_the_match_returns_400(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    existing = await created(client, patient(system, "1"))
    other = str(uuid.uuid4())
    response = await client.put(
        "Patient", params={"identifier": f"{system}|1"}, json=patient(system, "1", id=other)
    )
    assert response.status_code == 400
    assert await version_count(client, existing["id"]) == 1
    assert (await client.get(f"Patient/{other}")).status_code == 404


async def test_conditional_update_with_if_match_honours_the_version_of_the_match(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    existing = await created(client, patient(system, "1"))
    query = {"identifier": f"{system}|1"}
    stale = await client.put(
        "Patient", params=query, json=patient(system, "1"), headers={"If-Match": 'W/"2"'}
    )
    assert stale.status_code == 412
    current = await client.put(
        "Patient", params=query, json=patient(system, "1"), headers={"If-Match": 'W/"1"'}
    )
    assert current.status_code == 200
    assert await version_count(client, existing["id"]) == 2


async def test_conditional_update_with_if_match_and_no_match_returns_412(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    for body in (patient(system, "1"), patient(system, "1", id=str(uuid.uuid4()))):
        response = await client.put(
            "Patient",
            params={"identifier": f"{system}|1"},
            json=body,
            headers={"If-Match": 'W/"1"'},
        )
        assert response.status_code == 412, response.text
    assert await matches(client, system) == []


@pytest.mark.parametrize("query", ["nonsense=Svensson", "_format=json", "_count=1", "identifier="])
async def test_conditional_update_with_unsupported_or_no_criteria_returns_400(
    client: httpx.AsyncClient, query: str
) -> None:
    system = new_system()
    existing = await created(client, patient(system, "1"))
    response = await client.put(f"Patient?{query}", json=patient(system, "1", gender="male"))
    assert response.status_code == 400, response.text
    assert await version_count(client, existing["id"]) == 1


# --- conditional delete (DELETE Type?criteria) ----------------------------------------------


async def test_conditional_delete_with_no_match_returns_204_and_deletes_nothing(
    client: httpx.AsyncClient,
) -> None:
    system = new_system()
    bystander = await created(client, patient(system, "1"))
    response = await client.delete("Patient", params={"identifier": f"{system}|2"})
    assert response.status_code == 204
    assert await matches(client, system) == [bystander]


async def test_conditional_delete_with_one_match_deletes_it(client: httpx.AsyncClient) -> None:
    system = new_system()
    doomed = await created(client, patient(system, "1"))
    kept = await created(client, patient(system, "2"))
    response = await client.delete("Patient", params={"identifier": f"{system}|1"})
    assert response.status_code == 204
    assert (await client.get(f"Patient/{doomed['id']}")).status_code == 410
    assert await matches(client, system) == [kept]


async def test_conditional_delete_with_two_matches_returns_412(client: httpx.AsyncClient) -> None:
    system = new_system()
    await created(client, patient(system, "1"))
    await created(client, patient(system, "2"))
    response = await client.delete("Patient", params={"identifier": f"{system}|"})
    assert response.status_code == 412
    assert len(await matches(client, system)) == 2


@pytest.mark.parametrize(
    "query", ["", "nonsense=Svensson", "_format=json", "_pretty=true", "_count=1", "identifier=|"]
)
async def test_conditional_delete_never_silently_matches_everything(
    client: httpx.AsyncClient, query: str
) -> None:
    system = new_system()
    bystander = await created(client, patient(system, "1"))
    response = await client.delete(f"Patient?{query}")
    assert response.status_code in (400, 405), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await matches(client, system) == [bystander]
