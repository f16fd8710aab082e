"""read and vread (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

import uuid

import httpx

FHIR_JSON = "application/fhir+json"


def patient(**extra: object) -> dict[str, object]:
    return {"resourceType": "Patient", "name": [{"family": "Svensson", "given": ["Anna"]}], **extra}


async def created(client: httpx.AsyncClient, resource: dict[str, object]) -> httpx.Response:
    response = await client.post(
        str(resource["resourceType"]), json=resource, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201, response.text
    return response


async def test_read_returns_the_current_version_with_etag_and_last_modified(
    client: httpx.AsyncClient,
) -> None:
    new = (await created(client, patient())).json()
    response = await client.get(f"Patient/{new['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    body = response.json()
    assert body["id"] == new["id"]
    assert body["meta"]["versionId"] == "1"
    assert body["name"] == [{"family": "Svensson", "given": ["Anna"]}]


async def test_read_of_an_unknown_id_returns_404_with_an_operation_outcome(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(f"Patient/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_read_of_an_unknown_type_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.get("Patientt/1")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_returns_410_gone_for_a_deleted_resource(client: httpx.AsyncClient) -> None:
    new = (await created(client, patient())).json()
    assert (await client.delete(f"Patient/{new['id']}")).status_code == 204
    response = await client.get(f"Patient/{new['id']}")
    assert response.status_code == 410
    assert response.json()["issue"][0]["code"] == "deleted"


async def test_vread_returns_each_version_and_410_for_the_deletion(
    client: httpx.AsyncClient,
) -> None:
    new = (await created(client, patient())).json()
    id = new["id"]
    changed = {**new, "gender": "female"}
    assert (await client.put(f"Patient/{id}", json=changed)).status_code == 200
    assert (await client.delete(f"Patient/{id}")).status_code == 204
    first = await client.get(f"Patient/{id}/_history/1")
    second = await client.get(f"Patient/{id}/_history/2")
    assert first.status_code == 200
    assert "gender" not in first.json()
    assert second.status_code == 200
    assert second.json()["gender"] == "female"
    assert second.headers["etag"] == 'W/"2"'
    assert (await client.get(f"Patient/{id}/_history/3")).status_code == 410
    assert (await client.get(f"Patient/{id}/_history/4")).status_code == 404
    assert (await client.get(f"Patient/{id}/_history/x")).status_code == 404


async def test_if_none_match_with_the_current_etag_returns_304(client: httpx.AsyncClient) -> None:
    new = await created(client, patient())
    id = new.json()["id"]
    response = await client.get(f"Patient/{id}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.content == b""
    stale = await client.get(f"Patient/{id}", headers={"If-None-Match": 'W/"0"'})
    assert stale.status_code == 200


async def test_if_modified_since_after_the_last_update_returns_304(
    client: httpx.AsyncClient,
) -> None:
    new = await created(client, patient())
    id = new.json()["id"]
    later = "Fri, 01 Jan 2100 00:00:00 GMT"
    unchanged = await client.get(f"Patient/{id}", headers={"If-Modified-Since": later})
    assert unchanged.status_code == 304
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    response = await client.get(f"Patient/{id}", headers={"If-Modified-Since": earlier})
    assert response.status_code == 200


async def test_head_answers_like_read_without_a_body_and_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    new = (await created(client, patient())).json()
    for _ in range(2):
        response = await client.head(f"Patient/{new['id']}")
        assert response.status_code == 200
        assert response.headers["etag"] == 'W/"1"'
        assert response.content == b""
    assert (await client.head(f"Patient?_id={new['id']}")).status_code == 200
    still = await client.get(f"Patient/{new['id']}")
    assert still.status_code == 200
    assert still.json()["meta"]["versionId"] == "1"
