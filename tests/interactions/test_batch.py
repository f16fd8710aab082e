"""batch (https://hl7.org/fhir/R4/http.html#transaction): each entry of a Bundle POSTed to the
base is processed on its own; one failing entry does not affect the others."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


def entry(method: str, url: str, resource: Any = None, **request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {} if resource is None else {"resource": resource}
    out["request"] = {"method": method, "url": url, **request}
    return out


async def batch(
    client: httpx.AsyncClient, entries: list[Any], headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    response = await client.post(
        "", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    result: list[dict[str, Any]] = body["entry"]
    assert len(result) == len(entries)
    return result


async def ids_in(client: httpx.AsyncClient, system: str) -> set[str]:
    response = await client.get("Patient", params={"identifier": f"{system}|"})
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def failed(item: dict[str, Any], status: str) -> str:
    """The diagnostics of a failed entry, which has no resource and an OperationOutcome."""
    assert item["response"]["status"] == status, item
    assert "resource" not in item
    outcome = item["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics: str = outcome["issue"][0]["diagnostics"]
    return diagnostics


async def test_one_failing_entry_does_not_stop_the_others(client: httpx.AsyncClient) -> None:
    system = urn()
    result = await batch(
        client,
        [
            entry("POST", "Patient", patient(system, "1")),
            entry("POST", "Patient", {"resourceType": "Patient", "gender": 7}),
            entry("DELETE", f"Patient/{uuid.uuid4()}"),
            entry("POST", "Patient", patient(system, "2")),
        ],
    )
    assert result[0]["response"]["status"] == "201 Created"
    failed(result[1], "422 Unprocessable Entity")
    failed(result[2], "404 Not Found")
    assert result[3]["response"]["status"] == "201 Created"
    assert await ids_in(client, system) == {
        result[0]["resource"]["id"],
        result[3]["resource"]["id"],
    }


async def test_a_malformed_entry_fails_alone_with_400(client: httpx.AsyncClient) -> None:
    system = urn()
    result = await batch(
        client,
        [
            7,
            {"resource": patient(system, "1")},
            entry("GET", ""),
            entry("POST", "Patient"),
            entry("PUT", "Patient", patient(system, "1")),
            entry("POST", "Patient", patient(system, "ok")),
        ],
    )
    for item in result[:-1]:
        assert "Bundle.entry[" in failed(item, "400 Bad Request")
    assert result[-1]["response"]["status"] == "201 Created"
    assert await ids_in(client, system) == {result[-1]["resource"]["id"]}


async def test_each_entry_answers_like_its_rest_interaction(client: httpx.AsyncClient) -> None:
    system = urn()
    existing = await created(client, patient(system, "1"))
    name = f"Patient/{existing['id']}"
    result = await batch(
        client,
        [
            entry("GET", name),
            entry("PUT", name, {**existing, "gender": "male"}, ifMatch='W/"1"'),
            entry("PUT", name, {**existing, "gender": "female"}, ifMatch='W/"1"'),
            entry("POST", "Patient", patient(system, "1"), ifNoneExist=f"identifier={system}|1"),
            entry("GET", f"Patient?identifier={system}|1"),
            entry("GET", f"Patient/{uuid.uuid4()}"),
            entry("DELETE", f"Patient?identifier={system}|1"),
        ],
    )
    # Entries run in order, each on what the previous ones left.
    assert result[0]["resource"] == existing
    assert result[1]["response"]["status"] == "200 OK"
    assert result[1]["response"]["etag"] == 'W/"2"'
    assert result[1]["response"]["location"] == f"{name}/_history/2"
    failed(result[2], "412 Precondition Failed")
    assert result[3]["response"]["status"] == "200 OK"
    assert result[3]["resource"]["gender"] == "male"
    assert result[4]["resource"]["total"] == 1
    failed(result[5], "404 Not Found")
    assert result[6]["response"]["status"] == "204 No Content"
    assert (await client.get(name)).status_code == 410


async def test_prefer_return_minimal_applies_to_every_write_entry(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    result = await batch(
        client,
        [
            entry("POST", "Patient", patient(system, "1")),
            entry("GET", f"Patient?identifier={system}|"),
        ],
        headers={"Prefer": "return=minimal"},
    )
    assert "resource" not in result[0]
    assert result[0]["response"]["location"].startswith("Patient/")
    # A read always answers with what it read.
    assert result[1]["resource"]["type"] == "searchset"


async def test_a_conditional_reference_is_resolved_in_a_batch_entry(
    client: httpx.AsyncClient,
) -> None:
    system, value = urn(), str(uuid.uuid4())
    existing = await created(client, patient(system, value))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient?identifier={system}|{value}"},
    }
    missing = {**observation, "subject": {"reference": f"Patient?identifier={system}|none"}}
    result = await batch(
        client, [entry("POST", "Observation", observation), entry("POST", "Observation", missing)]
    )
    assert result[0]["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    failed(result[1], "412 Precondition Failed")


async def test_an_empty_batch_answers_an_empty_batch_response(client: httpx.AsyncClient) -> None:
    response = await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": []})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "batch-response"
