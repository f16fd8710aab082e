"""update and update as create (https://hl7.org/fhir/R4/http.html#update), with the
version-aware update of If-Match (https://hl7.org/fhir/R4/http.html#concurrency)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"


def patient(id: str | None = None, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Berg"}]}
    if id is not None:
        resource["id"] = id
    return {**resource, **extra}


async def created(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("Patient", json=patient(**extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def put(
    client: httpx.AsyncClient, id: str, resource: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.put(
        f"Patient/{id}", json=resource, headers={"Content-Type": FHIR_JSON, **headers}
    )


async def versions(client: httpx.AsyncClient, id: str) -> list[str]:
    """The versionIds in the instance history, newest first ('-' for a deletion)."""
    response = await client.get(f"Patient/{id}/_history")
    assert response.status_code == 200, response.text
    return [
        e["resource"]["meta"]["versionId"] if "resource" in e else "-"
        for e in response.json().get("entry", [])
    ]


async def test_update_returns_200_with_the_next_version(client: httpx.AsyncClient) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(new["id"], gender="female"))
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["lastUpdated"] > new["meta"]["lastUpdated"]
    assert body["gender"] == "female"
    assert (await client.get(f"Patient/{new['id']}")).json() == body
    assert await versions(client, new["id"]) == ["2", "1"]


async def test_update_replaces_the_whole_resource(client: httpx.AsyncClient) -> None:
    new = await created(client, birthDate="1970-01-01")
    response = await put(client, new["id"], patient(new["id"]))
    assert response.status_code == 200
    assert "birthDate" not in (await client.get(f"Patient/{new['id']}")).json()


async def test_update_as_create_with_a_client_id_returns_201(client: httpx.AsyncClient) -> None:
    id = f"client-{uuid.uuid4()}"
    response = await put(client, id, patient(id))
    assert response.status_code == 201, response.text
    base = str(client.base_url).rstrip("/")
    assert response.headers["location"] == f"{base}/Patient/{id}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.json()["meta"]["versionId"] == "1"
    assert (await client.get(f"Patient/{id}")).status_code == 200


async def test_update_with_prefer_return_minimal_returns_an_empty_body(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(new["id"]), Prefer="return=minimal")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'


@pytest.mark.parametrize("body_id", [None, "some-other-id"])
async def test_update_with_a_body_id_missing_or_different_from_the_url_returns_400(
    client: httpx.AsyncClient, body_id: str | None
) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(body_id, gender="male"))
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await versions(client, new["id"]) == ["1"]


@pytest.mark.parametrize("id", ["a_b", "x" * 65, "a%20b", "å"])
async def test_update_with_an_invalid_id_in_the_url_returns_400(
    client: httpx.AsyncClient, id: str
) -> None:
    response = await put(client, id, patient(id))
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_update_with_an_invalid_resource_returns_422_and_keeps_the_current_version(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(new["id"], gender=["female"]))
    assert response.status_code == 422
    assert any("Patient.gender" in i.get("expression", []) for i in response.json()["issue"])
    assert await versions(client, new["id"]) == ["1"]


async def test_update_with_the_wrong_resource_type_returns_400(client: httpx.AsyncClient) -> None:
    new = await created(client)
    body = {"resourceType": "Observation", "id": new["id"], "status": "final"}
    response = await put(client, new["id"], body)
    assert response.status_code == 400
    assert await versions(client, new["id"]) == ["1"]


async def test_update_with_a_current_if_match_returns_200(client: httpx.AsyncClient) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(new["id"]), **{"If-Match": 'W/"1"'})
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'


async def test_update_with_a_stale_if_match_returns_412(client: httpx.AsyncClient) -> None:
    new = await created(client)
    assert (await put(client, new["id"], patient(new["id"]))).status_code == 200
    response = await put(
        client, new["id"], patient(new["id"], gender="other"), **{"If-Match": 'W/"1"'}
    )
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await versions(client, new["id"]) == ["2", "1"]
    assert "gender" not in (await client.get(f"Patient/{new['id']}")).json()


async def test_update_with_if_match_on_a_resource_that_does_not_exist_returns_412(
    client: httpx.AsyncClient,
) -> None:
    id = str(uuid.uuid4())
    response = await put(client, id, patient(id), **{"If-Match": 'W/"1"'})
    assert response.status_code == 412
    assert (await client.get(f"Patient/{id}")).status_code == 404


async def test_update_with_a_malformed_if_match_returns_400(client: httpx.AsyncClient) -> None:
    new = await created(client)
    response = await put(client, new["id"], patient(new["id"]), **{"If-Match": "version one"})
    assert response.status_code == 400
    assert await versions(client, new["id"]) == ["1"]


async def test_update_after_delete_returns_201_and_the_version_continues(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    assert (await client.delete(f"Patient/{new['id']}")).status_code == 204
    response = await put(client, new["id"], patient(new["id"]))
    assert response.status_code == 201, response.text
    assert response.json()["meta"]["versionId"] == "3"
    assert response.headers["etag"] == 'W/"3"'
    assert (await client.get(f"Patient/{new['id']}")).status_code == 200
    assert await versions(client, new["id"]) == ["3", "-", "1"]


async def test_update_of_an_unknown_resource_type_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.put("Patientt/1", json={"resourceType": "Patientt", "id": "1"})
    assert response.status_code == 404
