"""patch with JSON Patch (https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

JSON_PATCH = "application/json-patch+json"


async def created(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "Patient", "name": [{"family": "Holm"}], **extra}
    response = await client.post("Patient", json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def patch(
    client: httpx.AsyncClient, id: str, operations: Any, **headers: str
) -> httpx.Response:
    return await client.patch(
        f"Patient/{id}", json=operations, headers={"Content-Type": JSON_PATCH, **headers}
    )


async def version_count(client: httpx.AsyncClient, id: str) -> int:
    response = await client.get(f"Patient/{id}/_history")
    assert response.status_code == 200
    return len(response.json().get("entry", []))


async def test_patch_applies_add_replace_remove_and_test_and_writes_a_new_version(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client, gender="female", birthDate="1980-02-03")
    operations = [
        {"op": "test", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/active", "value": True},
        {"op": "add", "path": "/name/0/given", "value": ["Ingrid"]},
        {"op": "add", "path": "/name/-", "value": {"family": "Holmberg", "use": "old"}},
        {"op": "replace", "path": "/gender", "value": "other"},
        {"op": "remove", "path": "/birthDate"},
    ]
    response = await patch(client, new["id"], operations)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["active"] is True
    assert body["gender"] == "other"
    assert "birthDate" not in body
    assert body["name"] == [
        {"family": "Holm", "given": ["Ingrid"]},
        {"family": "Holmberg", "use": "old"},
    ]
    assert (await client.get(f"Patient/{new['id']}")).json() == body


async def test_patch_keeps_decimals_exactly(client: httpx.AsyncClient) -> None:
    body = (
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "w"},'
        b' "valueQuantity": {"value": 70.50, "unit": "kg"}}'
    )
    response = await client.post(
        "Observation", content=body, headers={"Content-Type": "application/fhir+json"}
    )
    id = response.json()["id"]
    operations = b'[{"op": "add", "path": "/valueQuantity/code", "value": "kg"},' + (
        b' {"op": "test", "path": "/valueQuantity/value", "value": 70.5}]'
    )
    patched = await client.patch(
        f"Observation/{id}", content=operations, headers={"Content-Type": JSON_PATCH}
    )
    assert patched.status_code == 200, patched.text
    assert b'"value":70.50,' in patched.content


async def test_a_failing_test_operation_returns_422_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client, gender="female")
    operations = [
        {"op": "replace", "path": "/gender", "value": "male"},
        {"op": "test", "path": "/gender", "value": "female"},
    ]
    response = await patch(client, new["id"], operations)
    assert response.status_code == 422
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"Patient/{new['id']}")).json()["gender"] == "female"
    assert await version_count(client, new["id"]) == 1


async def test_a_test_operation_distinguishes_true_from_1(client: httpx.AsyncClient) -> None:
    new = await created(client, active=True, multipleBirthInteger=1)
    for path, value in (("/active", 1), ("/multipleBirthInteger", True)):
        response = await patch(client, new["id"], [{"op": "test", "path": path, "value": value}])
        assert response.status_code == 422, path
    assert await version_count(client, new["id"]) == 1


async def test_a_patch_to_a_path_that_does_not_exist_returns_422(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    for operation in (
        {"op": "replace", "path": "/birthDate", "value": "2000-01-01"},
        {"op": "remove", "path": "/name/3"},
        {"op": "add", "path": "/contact/0/name", "value": {"family": "X"}},
    ):
        response = await patch(client, new["id"], [operation])
        assert response.status_code == 422, (operation, response.text)
    assert await version_count(client, new["id"]) == 1


async def test_a_patch_that_produces_an_invalid_resource_returns_422(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client)
    for operations in (
        [{"op": "add", "path": "/favouriteColour", "value": "blue"}],
        [{"op": "replace", "path": "/name", "value": "Holm"}],
        [{"op": "add", "path": "/birthDate", "value": "yesterday"}],
    ):
        response = await patch(client, new["id"], operations)
        assert response.status_code == 422, response.text
        assert response.json()["issue"][0]["expression"]
    assert await version_count(client, new["id"]) == 1


async def test_a_patch_that_changes_the_id_or_type_is_refused(client: httpx.AsyncClient) -> None:
    new = await created(client)
    for operation in (
        {"op": "replace", "path": "/id", "value": "another"},
        {"op": "remove", "path": "/id"},
        {"op": "replace", "path": "/resourceType", "value": "Group"},
    ):
        response = await patch(client, new["id"], [operation])
        assert response.status_code in (400, 422), operation
    assert await version_count(client, new["id"]) == 1


async def test_a_malformed_patch_document_returns_400(client: httpx.AsyncClient) -> None:
    new = await created(client)
    for operations in (
        {"op": "add", "path": "/active", "value": True},
        [{"op": "frobnicate", "path": "/active"}],
        [{"op": "add", "path": "active", "value": True}],
        [{"op": "add", "path": "/active"}],
        [{"op": "move", "path": "/active"}],
    ):
        response = await patch(client, new["id"], operations)
        assert response.status_code == 400, operations
    assert await version_count(client, new["id"]) == 1


async def test_a_patch_with_the_wrong_content_type_returns_415(client: httpx.AsyncClient) -> None:
    new = await created(client)
    operations = [{"op": "add", "path": "/active", "value": True}]
    for content_type in ("application/fhir+json", "application/json", "application/xml"):
        response = await client.patch(
            f"Patient/{new['id']}", json=operations, headers={"Content-Type": content_type}
        )
        assert response.status_code == 415
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await version_count(client, new["id"]) == 1


async def test_patch_of_a_deleted_resource_returns_410(client: httpx.AsyncClient) -> None:
    new = await created(client)
    assert (await client.delete(f"Patient/{new['id']}")).status_code == 204
    response = await patch(client, new["id"], [{"op": "add", "path": "/active", "value": True}])
    assert response.status_code == 410
    assert await version_count(client, new["id"]) == 2


async def test_patch_of_an_unknown_resource_returns_404(client: httpx.AsyncClient) -> None:
    response = await patch(
        client, str(uuid.uuid4()), [{"op": "add", "path": "/active", "value": True}]
    )
    assert response.status_code == 404


async def test_patch_with_a_stale_if_match_returns_412(client: httpx.AsyncClient) -> None:
    new = await created(client)
    first = await patch(client, new["id"], [{"op": "add", "path": "/active", "value": True}])
    assert first.status_code == 200
    response = await patch(
        client,
        new["id"],
        [{"op": "replace", "path": "/active", "value": False}],
        **{"If-Match": 'W/"1"'},
    )
    assert response.status_code == 412
    assert (await client.get(f"Patient/{new['id']}")).json()["active"] is True
    current = await patch(
        client,
        new["id"],
        [{"op": "replace", "path": "/active", "value": False}],
        **{"If-Match": 'W/"2"'},
    )
    assert current.status_code == 200
    assert current.json()["meta"]["versionId"] == "3"


async def test_patch_is_recorded_in_history_as_patch(client: httpx.AsyncClient) -> None:
    new = await created(client)
    await patch(client, new["id"], [{"op": "add", "path": "/active", "value": True}])
    entries = (await client.get(f"Patient/{new['id']}/_history")).json()["entry"]
    assert entries[0]["request"] == {"method": "PATCH", "url": f"Patient/{new['id']}"}
    assert entries[0]["response"]["status"] == "200 OK"
