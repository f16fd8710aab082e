"""Content negotiation (https://hl7.org/fhir/R4/http.html#mime-type): `_format`, `Accept`,
`Content-Type`, `_pretty`, and the limits on a request body."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

FHIR_JSON = "application/fhir+json"
LIMIT = 1024 * 1024  # the test server's max_body_bytes


async def created(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post("Patient", json={"resourceType": "Patient", "active": True})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0]


async def still_serving(client: httpx.AsyncClient) -> None:
    new = await created(client)
    assert (await client.get(f"Patient/{new['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("_format=json", FHIR_JSON),
        ("_format=application/fhir%2Bjson", FHIR_JSON),
        ("_format=application/fhir+json", FHIR_JSON),
        ("_format=application/json", "application/json"),
        ("_format=JSON", FHIR_JSON),
    ],
)
async def test_format_chooses_the_response_media_type(
    client: httpx.AsyncClient, query: str, expected: str
) -> None:
    new = await created(client)
    response = await client.get(f"Patient/{new['id']}?{query}", headers={"Accept": "text/xml"})
    assert response.status_code == 200, response.text
    assert media_type(response) == expected
    assert response.json()["id"] == new["id"]


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, FHIR_JSON),
        (FHIR_JSON, FHIR_JSON),
        (f"{FHIR_JSON}; fhirVersion=4.0", FHIR_JSON),
        ("application/json", "application/json"),
        ("application/json+fhir", FHIR_JSON),
        ("*/*", FHIR_JSON),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", FHIR_JSON),
        ("application/fhir+xml, application/json", "application/json"),
    ],
)
async def test_accept_chooses_the_response_media_type(
    client: httpx.AsyncClient, accept: str | None, expected: str
) -> None:
    new = await created(client)
    headers = {"Accept": accept} if accept else {}
    response = await client.get(f"Patient/{new['id']}", headers=headers)
    assert response.status_code == 200
    assert media_type(response) == expected


@pytest.mark.parametrize(
    ("query", "accept"),
    [
        ("", "application/fhir+xml"),
        ("", "application/xml"),
        ("_format=xml", None),
        ("_format=application/fhir+xml", None),
        ("_format=xml", FHIR_JSON),
    ],
)
async def test_an_xml_response_returns_406_with_an_operation_outcome(
    client: httpx.AsyncClient, query: str, accept: str | None
) -> None:
    new = await created(client)
    headers = {"Accept": accept} if accept else {}
    for url in (f"Patient/{new['id']}?{query}", f"Patient?{query}", f"metadata?{query}"):
        response = await client.get(url, headers=headers)
        assert response.status_code == 406, url
        assert media_type(response) == FHIR_JSON
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_write_that_cannot_be_answered_is_refused_before_it_is_done(
    client: httpx.AsyncClient,
) -> None:
    system = f"urn:uuid:{uuid.uuid4()}"
    resource = {"resourceType": "Patient", "identifier": [{"system": system, "value": "1"}]}
    response = await client.post("Patient?_format=xml", json=resource)
    assert response.status_code == 406
    found = await client.get("Patient", params={"identifier": f"{system}|"})
    assert found.json()["total"] == 0


async def test_an_unknown_format_returns_400(client: httpx.AsyncClient) -> None:
    response = await client.get("metadata?_format=yaml")
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_pretty_indents_the_response_and_keeps_decimals_exact(
    client: httpx.AsyncClient,
) -> None:
    body = (
        b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"},'
        b' "valueQuantity": {"value": 1.50}}'
    )
    response = await client.post(
        "Observation?_pretty=true", content=body, headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 201
    assert '\n  "resourceType": "Observation"' in response.text
    assert '"value": 1.50\n' in response.text
    id = response.json()["id"]
    for url in (f"Observation/{id}", f"Observation/{id}/_history", f"Observation?_id={id}"):
        pretty = await client.get(url, params={"_pretty": "true"})
        assert "\n  " in pretty.text
        assert '"value": 1.50\n' in pretty.text
        compact = await client.get(url, params={"_pretty": "false"})
        assert "\n" not in compact.text
        assert '"value":1.50}' in compact.text


@pytest.mark.parametrize(
    "content_type",
    [None, "application/xml", "application/fhir+xml", "text/plain", "application/json-patch+json"],
)
async def test_an_unsupported_content_type_on_post_and_put_returns_415(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    new = await created(client)
    body = b'{"resourceType": "Patient", "id": "%s", "active": false}' % new["id"].encode()
    headers = {"Content-Type": content_type} if content_type else {}
    for method, url in (("POST", "Patient"), ("PUT", f"Patient/{new['id']}")):
        response = await client.request(method, url, content=body, headers=headers)
        assert response.status_code == 415, (method, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get(f"Patient/{new['id']}")).json()["active"] is True


@pytest.mark.parametrize(
    "content_type",
    ["application/json", f"{FHIR_JSON}; charset=utf-8", f"{FHIR_JSON};fhirVersion=4.0"],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "Patient", content=b'{"resourceType": "Patient"}', headers={"Content-Type": content_type}
    )
    assert response.status_code == 201


def oversized(system: str) -> bytes:
    padding = "x" * LIMIT
    return (
        b'{"resourceType": "Patient", "identifier": [{"system": "%s", "value": "1"}],'
        b' "name": [{"family": "%s"}]}' % (system.encode(), padding.encode())
    )


async def test_a_body_over_the_limit_returns_413(client: httpx.AsyncClient) -> None:
    system = f"urn:uuid:{uuid.uuid4()}"
    response = await client.post(
        "Patient", content=oversized(system), headers={"Content-Type": FHIR_JSON}
    )
    assert response.status_code == 413
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient", params={"identifier": f"{system}|"})).json()["total"] == 0
    await still_serving(client)


async def test_a_chunked_body_over_the_limit_returns_413(client: httpx.AsyncClient) -> None:
    system = f"urn:uuid:{uuid.uuid4()}"
    body = oversized(system)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await client.post("Patient", content=chunks(), headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 413
    assert (await client.get("Patient", params={"identifier": f"{system}|"})).json()["total"] == 0
    await still_serving(client)


async def test_a_body_just_under_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    head = b'{"resourceType": "Patient", "name": [{"family": "'
    tail = b'"}]}'
    body = head + b"x" * (LIMIT - len(head) - len(tail)) + tail
    assert len(body) == LIMIT
    response = await client.post(
        "Patient", content=body, headers={"Content-Type": FHIR_JSON, "Prefer": "return=minimal"}
    )
    assert response.status_code == 201, response.text[:300]
