"""delete (https://hl7.org/fhir/R4/http.html#delete): a deletion is a new version that history
keeps; earlier versions stay readable."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


async def created(client: httpx.AsyncClient) -> str:
    response = await client.post("Patient", json={"resourceType": "Patient", "active": True})
    assert response.status_code == 201, response.text
    id: str = response.json()["id"]
    return id


async def history(client: httpx.AsyncClient, id: str) -> list[dict[str, Any]]:
    response = await client.get(f"Patient/{id}/_history")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json().get("entry", [])
    return entries


async def test_delete_returns_204_and_the_resource_is_gone(client: httpx.AsyncClient) -> None:
    id = await created(client)
    response = await client.delete(f"Patient/{id}")
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'
    assert (await client.get(f"Patient/{id}")).status_code == 410
    assert (await client.get(f"Patient/{id}/_history/1")).status_code == 200


async def test_deleting_twice_returns_204_and_writes_no_extra_version(
    client: httpx.AsyncClient,
) -> None:
    id = await created(client)
    assert (await client.delete(f"Patient/{id}")).status_code == 204
    again = await client.delete(f"Patient/{id}")
    assert again.status_code == 204
    assert again.headers["etag"] == 'W/"2"'
    assert len(await history(client, id)) == 2


async def test_delete_of_an_unknown_resource_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.delete(f"Patient/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_delete_of_an_unknown_resource_type_returns_404(client: httpx.AsyncClient) -> None:
    assert (await client.delete("Patientt/1")).status_code == 404


async def test_history_shows_the_delete_entry_without_a_resource(
    client: httpx.AsyncClient,
) -> None:
    id = await created(client)
    await client.delete(f"Patient/{id}")
    deletion, creation = await history(client, id)
    assert "resource" not in deletion
    assert deletion["request"] == {"method": "DELETE", "url": f"Patient/{id}"}
    assert deletion["response"]["etag"] == 'W/"2"'
    assert deletion["fullUrl"].endswith(f"/Patient/{id}")
    assert creation["resource"]["id"] == id
    assert creation["request"]["method"] == "POST"


async def test_a_deleted_resource_is_not_found_by_search(client: httpx.AsyncClient) -> None:
    id = await created(client)
    assert (await client.get("Patient", params={"_id": id})).json()["total"] == 1
    await client.delete(f"Patient/{id}")
    assert (await client.get("Patient", params={"_id": id})).json()["total"] == 0


async def test_delete_with_prefer_operation_outcome_returns_an_operation_outcome(
    client: httpx.AsyncClient,
) -> None:
    id = await created(client)
    response = await client.delete(f"Patient/{id}", headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 200
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"Patient/{id}")).status_code == 410


async def test_delete_with_a_stale_if_match_returns_412_and_deletes_nothing(
    client: httpx.AsyncClient,
) -> None:
    id = await created(client)
    response = await client.delete(f"Patient/{id}", headers={"If-Match": 'W/"2"'})
    assert response.status_code == 412
    assert (await client.get(f"Patient/{id}")).status_code == 200
    current = await client.delete(f"Patient/{id}", headers={"If-Match": 'W/"1"'})
    assert current.status_code == 204
    assert (await client.get(f"Patient/{id}")).status_code == 410
