"""Custom search parameters (https://hl7.org/fhir/R4/searchparameter.html): a SearchParameter
resource a module writes takes effect at once for new writes, and `$reindex` indexes the
resources stored before it, in the background, with its progress visible."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from .test_search_results import TAG_SYSTEM, get, ids, put, tagged

MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def search_parameter(code: str, **changes: Any) -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": code,
        "url": f"http://flode.example/SearchParameter/{code}",
        "name": code,
        "status": "active",
        "description": "Civilstånd",
        "code": code,
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.maritalStatus",
        **changes,
    }


def married(tag: str, id: str) -> dict[str, Any]:
    return tagged(
        {
            "resourceType": "Patient",
            "id": id,
            "maritalStatus": {"coding": [{"system": MARITAL, "code": "M"}]},
        },
        tag,
    )


async def wait_for(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """Poll a $reindex job until it has stopped; its last status."""
    for _ in range(200):
        response = await client.get(location)
        assert response.status_code == 200, response.text
        assert "X-Progress" in response.headers
        status: dict[str, Any] = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value"))
            for p in response.json()["parameter"]
        }
        if status["status"] != "running":
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("the $reindex job did not finish")


async def test_a_custom_parameter_finds_new_writes_at_once_and_old_ones_after_reindex(
    client: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    code = f"civil-{tag[:8]}"
    scope = {"_tag": f"{TAG_SYSTEM}|{tag}", code: f"{MARITAL}|M"}
    await put(client, married(tag, f"{tag[:8]}-before"))
    response = await client.post("SearchParameter", json=search_parameter(code))
    assert response.status_code == 201, response.text
    await put(client, married(tag, f"{tag[:8]}-after"))

    assert ids(await get(client, "Patient", scope)) == [f"{tag[:8]}-after"]

    started = await client.post("Patient/$reindex")
    assert started.status_code == 202, started.text
    location = started.headers["content-location"]
    assert "/$reindex/" in location
    status = await wait_for(client, location)
    assert status["status"] == "completed"
    assert status["processed"] == status["total"] > 0
    assert sorted(ids(await get(client, "Patient", scope))) == [
        f"{tag[:8]}-after",
        f"{tag[:8]}-before",
    ]


async def test_the_capability_statement_lists_a_custom_parameter(
    client: httpx.AsyncClient,
) -> None:
    code = f"civil-{uuid.uuid4().hex[:8]}"
    assert (await client.post("SearchParameter", json=search_parameter(code))).status_code == 201
    statement = (await client.get("metadata")).json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert code in {p["name"] for p in patient["searchParam"]}


async def test_a_deleted_or_retired_custom_parameter_is_unknown_again(
    client: httpx.AsyncClient,
) -> None:
    code = f"civil-{uuid.uuid4().hex[:8]}"
    resource = search_parameter(code)
    assert (await client.post("SearchParameter", json=resource)).status_code == 201
    strict = {"prefer": "handling=strict"}
    found = await client.get("Patient", params={code: "M"}, headers=strict)
    assert found.status_code == 200
    (created,) = (await get(client, "SearchParameter", {"code": code}))["entry"]
    id = created["resource"]["id"]
    retired = await client.put(
        f"SearchParameter/{id}", json={**resource, "id": id, "status": "retired"}
    )
    assert retired.status_code == 200, retired.text
    assert (await client.get("Patient", params={code: "M"}, headers=strict)).status_code == 400
    await client.put(f"SearchParameter/{id}", json={**resource, "id": id})
    assert (await client.get("Patient", params={code: "M"}, headers=strict)).status_code == 200
    assert (await client.delete(f"SearchParameter/{id}")).status_code in (200, 204)
    assert (await client.get("Patient", params={code: "M"}, headers=strict)).status_code == 400


async def test_reindex_of_every_type_takes_types_from_a_parameters_body(
    client: httpx.AsyncClient,
) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "type", "valueCode": "Organization"}],
    }
    started = await client.post("$reindex", json=body)
    assert started.status_code == 202, started.text
    status = await wait_for(client, started.headers["content-location"])
    assert status["status"] == "completed"
    assert status["type"] == "Organization"


async def test_reindex_refuses_an_unknown_type_and_a_body_that_is_not_parameters(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("Nonsense/$reindex")).status_code == 404
    wrong = await client.post("$reindex", json={"resourceType": "Patient"})
    assert wrong.status_code == 400
    unknown = await client.post(
        "$reindex",
        json={"resourceType": "Parameters", "parameter": [{"name": "type", "valueCode": "X"}]},
    )
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"


async def test_an_unknown_reindex_job_is_404_and_a_finished_one_cannot_be_cancelled(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get(f"$reindex/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("$reindex/not-a-job")).status_code == 404
    started = await client.post("Organization/$reindex")
    location = started.headers["content-location"]
    await wait_for(client, location)
    cancelled = await client.delete(location)
    assert cancelled.status_code == 200
    status = {p["name"]: p for p in cancelled.json()["parameter"]}
    assert status["status"]["valueCode"] == "completed"


async def test_a_search_parameter_that_cannot_be_indexed_is_refused_with_422(
    client: httpx.AsyncClient,
) -> None:
    code = f"civil-{uuid.uuid4().hex[:8]}"
    for resource, reason in [
        (search_parameter(code, expression="Patient.maritalStatus.frobnicate("), "expression"),
        (search_parameter(code, base=["Nonsense"]), "Nonsense"),
        (search_parameter("birthdate"), "standard parameter"),
        (search_parameter(code, type="special"), "special"),
        (search_parameter("has space"), "code"),
        ({k: v for k, v in search_parameter(code).items() if k != "expression"}, "expression"),
    ]:
        response = await client.post("SearchParameter", json=resource)
        assert response.status_code == 422, response.text
        assert reason in response.text
    assert (await get(client, "SearchParameter", {"code": code})).get("total") == 0


async def test_a_draft_search_parameter_is_stored_but_not_used(client: httpx.AsyncClient) -> None:
    code = f"civil-{uuid.uuid4().hex[:8]}"
    response = await client.post("SearchParameter", json=search_parameter(code, status="draft"))
    assert response.status_code == 201
    strict = await client.get("Patient", params={code: "M"}, headers={"prefer": "handling=strict"})
    assert strict.status_code == 400


async def test_a_search_parameter_written_in_a_transaction_takes_effect_too(
    client: httpx.AsyncClient,
) -> None:
    code = f"civil-{uuid.uuid4().hex[:8]}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": search_parameter(code),
                "request": {"method": "PUT", "url": f"SearchParameter/{code}"},
            }
        ],
    }
    assert (await client.post("", json=bundle)).status_code == 200
    strict = await client.get("Patient", params={code: "M"}, headers={"prefer": "handling=strict"})
    assert strict.status_code == 200, strict.text
