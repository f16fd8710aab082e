"""create (https://hl7.org/fhir/R4/http.html#create), and what a write keeps exactly as sent:
decimals (https://hl7.org/fhir/R4/json.html#primitive) and unicode."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"
SYSTEM = "urn:flode:test:create"


def patient(value: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": value}],
        "name": [{"family": "Lindqvist"}],
        **extra,
    }


async def post(
    client: httpx.AsyncClient, resource: dict[str, Any], **headers: str
) -> httpx.Response:
    return await client.post(
        str(resource["resourceType"]),
        json=resource,
        headers={"Content-Type": FHIR_JSON, **headers},
    )


async def matching(client: httpx.AsyncClient, value: str) -> int:
    """How many current Patients carry the test identifier `value`."""
    response = await client.get("Patient", params={"identifier": f"{SYSTEM}|{value}"})
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def written_since(client: httpx.AsyncClient, since: str) -> int:
    """How many versions of any resource were written at or after `since`."""
    response = await client.get("_history", params={"_since": since})
    assert response.status_code == 200, response.text
    return len(response.json().get("entry", []))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def test_create_returns_201_with_location_etag_and_the_stored_resource(
    client: httpx.AsyncClient,
) -> None:
    value = str(uuid.uuid4())
    response = await post(client, patient(value))
    assert response.status_code == 201, response.text
    body = response.json()
    id = body["id"]
    base = str(client.base_url).rstrip("/")
    assert response.headers["location"] == f"{base}/Patient/{id}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert "last-modified" in response.headers
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")
    assert body["identifier"] == [{"system": SYSTEM, "value": value}]
    assert (await client.get(f"Patient/{id}")).json() == body


async def test_create_assigns_the_id_and_ignores_an_id_in_the_body(
    client: httpx.AsyncClient,
) -> None:
    sent_id = f"client-{uuid.uuid4()}"
    first = await post(client, patient(str(uuid.uuid4()), id=sent_id))
    second = await post(client, patient(str(uuid.uuid4()), id=sent_id))
    assert first.status_code == second.status_code == 201
    ids = {first.json()["id"], second.json()["id"]}
    assert sent_id not in ids
    assert len(ids) == 2
    assert (await client.get(f"Patient/{sent_id}")).status_code == 404


async def test_create_ignores_even_an_invalid_id_in_the_body(client: httpx.AsyncClient) -> None:
    response = await post(client, patient(str(uuid.uuid4()), id="not a valid id!"))
    assert response.status_code == 201, response.text
    assert response.json()["id"] != "not a valid id!"


async def test_create_sets_version_and_last_updated_but_keeps_the_clients_profile_and_tags(
    client: httpx.AsyncClient,
) -> None:
    meta = {
        "versionId": "17",
        "lastUpdated": "2001-01-01T00:00:00Z",
        "profile": ["http://example.org/StructureDefinition/my-patient"],
        "tag": [{"system": "urn:flode:tag", "code": "kept"}],
    }
    response = await post(client, patient(str(uuid.uuid4()), meta=meta))
    assert response.status_code == 201, response.text
    stored = (await client.get(f"Patient/{response.json()['id']}")).json()["meta"]
    assert stored["versionId"] == "1"
    assert stored["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert stored["profile"] == meta["profile"]
    assert stored["tag"] == meta["tag"]


async def test_prefer_return_minimal_returns_an_empty_body(client: httpx.AsyncClient) -> None:
    response = await post(client, patient(str(uuid.uuid4())), Prefer="return=minimal")
    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'
    assert (await client.get(response.headers["location"])).status_code == 200


async def test_prefer_return_operation_outcome_returns_an_operation_outcome(
    client: httpx.AsyncClient,
) -> None:
    response = await post(client, patient(str(uuid.uuid4())), Prefer="return=OperationOutcome")
    assert response.status_code == 201
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["severity"] == "information"
    assert "/Patient/" in response.headers["location"]


async def test_prefer_return_representation_returns_the_resource(client: httpx.AsyncClient) -> None:
    response = await post(client, patient(str(uuid.uuid4())), Prefer="return=representation")
    assert response.status_code == 201
    assert response.json()["resourceType"] == "Patient"


async def test_a_resource_type_that_does_not_match_the_url_returns_400(
    client: httpx.AsyncClient,
) -> None:
    value = str(uuid.uuid4())
    response = await client.post(
        "Observation", json=patient(value), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["expression"] == ["resourceType"]
    assert await matching(client, value) == 0


@pytest.mark.parametrize("body", [b"[]", b'"Patient"', b"42", b"null", b"true"])
async def test_a_body_that_is_not_a_json_object_returns_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    since = now()
    response = await client.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await written_since(client, since) == 0


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b'{"resourceType": "Patient",',
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient", "active": NaN}',
        b'{"resourceType": "Patient", "x": 1E400}',
        b'{"resourceType": "Patient", "name": [{"family": "\\ud800"}]}',
        b'{"resourceType": "Patient", "name": [{"family": "\xff"}]}',
    ],
)
async def test_malformed_json_returns_400(client: httpx.AsyncClient, body: bytes) -> None:
    since = now()
    response = await client.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await written_since(client, since) == 0


async def test_json_nested_too_deeply_returns_400_not_500(client: httpx.AsyncClient) -> None:
    since = now()
    for depth in (900, 1000, 1020, 5000):
        body = b'{"resourceType": "Patient", "x": ' + b"[" * depth + b"1.5" + b"]" * depth + b"}"
        response = await client.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
        assert response.status_code == 400, (depth, response.text)
        plain = b"[" * depth + b"]" * depth
        response = await client.post("Patient", content=plain, headers={"Content-Type": FHIR_JSON})
        assert response.status_code == 400, (depth, response.text)
    assert await written_since(client, since) == 0


@pytest.mark.parametrize(
    ("extra", "expression"),
    [
        ({"favouriteColour": "blue"}, "Patient.favouriteColour"),
        ({"active": "yes"}, "Patient.active"),
        ({"birthDate": "1970-13-45"}, "Patient.birthDate"),
        ({"name": {"family": "Lindqvist"}}, "Patient.name"),
    ],
)
async def test_an_invalid_resource_returns_422_with_the_issue_expression(
    client: httpx.AsyncClient, extra: dict[str, Any], expression: str
) -> None:
    value = str(uuid.uuid4())
    response = await post(client, patient(value, **extra))
    assert response.status_code == 422, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(expression in issue.get("expression", []) for issue in outcome["issue"])
    assert all(issue["severity"] in ("error", "fatal") for issue in outcome["issue"])
    assert await matching(client, value) == 0


async def test_create_of_an_unknown_resource_type_returns_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "Patientt", json={"resourceType": "Patientt"}, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "number",
    [
        "1.50",
        "0.100",
        "1e2",
        "1.0E-3",
        "-0.0",
        "100",
        "12345678901234567890123",
        "3.14159265358979323846264338327950288",
    ],
)
async def test_decimals_are_kept_exactly_as_sent(client: httpx.AsyncClient, number: str) -> None:
    body = (
        '{"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, '
        f'"valueQuantity": {{"value": {number}, "unit": "kg"}}}}'
    )
    response = await client.post(
        "Observation", content=body.encode(), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201, response.text
    assert f'"value":{number},' in response.text
    read = await client.get(f"Observation/{response.json()['id']}")
    assert f'"value":{number},' in read.text
    history = await client.get(f"Observation/{response.json()['id']}/_history")
    assert f'"value":{number},' in history.text


async def test_unicode_survives_the_round_trip(client: httpx.AsyncClient) -> None:
    name = {"family": "Åström-Öberg", "given": ["Märta", "Ægir", "Zoë", "李"]}
    raw = '{"resourceType": "Patient", "name": [{"family": "Åström-Öberg"}]}'.encode()
    response = await client.post(
        "Patient", content=raw, headers={"Content-Type": f"{FHIR_JSON}; charset=utf-8"}
    )
    assert response.status_code == 201
    assert response.json()["name"][0]["family"] == "Åström-Öberg"
    response = await post(client, patient(str(uuid.uuid4()), name=[name]))
    assert response.status_code == 201
    read = await client.get(f"Patient/{response.json()['id']}")
    assert read.json()["name"] == [name]
    assert "Åström-Öberg".encode() in read.content
