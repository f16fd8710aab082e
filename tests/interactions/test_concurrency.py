"""Concurrent writes over real parallel HTTP requests
(https://hl7.org/fhir/R4/http.html#concurrency): conditional creates stay unique, If-Match lets
exactly one writer win, and versions are never lost or duplicated."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx

PARALLEL = 16


def patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


async def created(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    response = await client.post("Patient", json={"resourceType": "Patient", **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def matching(client: httpx.AsyncClient, system: str) -> list[str]:
    response = await client.get("Patient", params={"identifier": f"{system}|"})
    assert response.status_code == 200
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


async def history_versions(client: httpx.AsyncClient, id: str) -> list[int]:
    response = await client.get(f"Patient/{id}/_history", params={"_count": "1000"})
    assert response.status_code == 200
    return [int(e["response"]["etag"][3:-1]) for e in response.json()["entry"]]


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


async def test_concurrent_conditional_creates_for_one_identifier_create_exactly_one_resource(
    client: httpx.AsyncClient,
) -> None:
    system, value = f"urn:uuid:{uuid.uuid4()}", str(uuid.uuid4())
    responses = await asyncio.gather(
        *[
            client.post(
                "Patient",
                json=patient(system, value),
                headers={"If-None-Exist": f"identifier={system}|{value}"},
            )
            for _ in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {201: 1, 200: PARALLEL - 1}, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await matching(client, system)) == 1


async def test_concurrent_conditional_creates_with_and_without_the_system_create_one_resource(
    client: httpx.AsyncClient,
) -> None:
    system, value = f"urn:uuid:{uuid.uuid4()}", str(uuid.uuid4())
    criteria = [f"identifier={system}|{value}", f"identifier={value}"]
    responses = await asyncio.gather(
        *[
            client.post(
                "Patient",
                json=patient(system, value),
                headers={"If-None-Exist": criteria[n % 2]},
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {201: 1, 200: PARALLEL - 1}, [r.text for r in responses]
    assert len(await matching(client, system)) == 1


async def test_concurrent_conditional_updates_for_one_identifier_create_exactly_one_resource(
    client: httpx.AsyncClient,
) -> None:
    system, value = f"urn:uuid:{uuid.uuid4()}", str(uuid.uuid4())
    responses = await asyncio.gather(
        *[
            client.put(
                "Patient",
                params={"identifier": f"{system}|{value}"},
                json=patient(system, value, birthDate=f"{1950 + n}"),
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {201: 1, 200: PARALLEL - 1}, [r.text for r in responses]
    (id,) = await matching(client, system)
    assert sorted(await history_versions(client, id)) == list(range(1, PARALLEL + 1))


async def test_concurrent_puts_with_the_same_if_match_let_exactly_one_win(
    client: httpx.AsyncClient,
) -> None:
    id = (await created(client))["id"]
    responses = await asyncio.gather(
        *[
            client.put(
                f"Patient/{id}",
                json={"resourceType": "Patient", "id": id, "birthDate": f"{1950 + n}"},
                headers={"If-Match": 'W/"1"'},
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {200: 1, 412: PARALLEL - 1}, [r.text for r in responses]
    (winner,) = [r.json() for r in responses if r.status_code == 200]
    current = await client.get(f"Patient/{id}")
    assert current.json() == winner
    assert current.json()["meta"]["versionId"] == "2"
    assert await history_versions(client, id) == [2, 1]


async def test_concurrent_puts_without_if_match_get_distinct_consecutive_versions(
    client: httpx.AsyncClient,
) -> None:
    id = (await created(client))["id"]
    responses = await asyncio.gather(
        *[
            client.put(
                f"Patient/{id}",
                json={"resourceType": "Patient", "id": id, "birthDate": f"{1950 + n}"},
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {200: PARALLEL}, [r.text for r in responses]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(2, PARALLEL + 2))
    assert await history_versions(client, id) == list(range(PARALLEL + 1, 0, -1))
    last = max(responses, key=lambda r: int(r.json()["meta"]["versionId"]))
    assert (await client.get(f"Patient/{id}")).json() == last.json()


async def test_concurrent_update_as_create_of_one_new_id_creates_it_once(
    client: httpx.AsyncClient,
) -> None:
    id = str(uuid.uuid4())
    responses = await asyncio.gather(
        *[
            client.put(
                f"Patient/{id}",
                json={"resourceType": "Patient", "id": id, "birthDate": f"{1950 + n}"},
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {201: 1, 200: PARALLEL - 1}, [r.text for r in responses]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(1, PARALLEL + 1))
    assert await history_versions(client, id) == list(range(PARALLEL, 0, -1))


async def test_concurrent_patches_lose_no_update(client: httpx.AsyncClient) -> None:
    id = (await created(client, name=[{"family": "Start"}]))["id"]
    responses = await asyncio.gather(
        *[
            client.patch(
                f"Patient/{id}",
                json=[{"op": "add", "path": "/name/-", "value": {"family": f"F{n}"}}],
                headers={"Content-Type": "application/json-patch+json"},
            )
            for n in range(PARALLEL)
        ]
    )
    assert statuses(responses) == {200: PARALLEL}, [r.text for r in responses]
    names = {n["family"] for n in (await client.get(f"Patient/{id}")).json()["name"]}
    assert names == {"Start"} | {f"F{n}" for n in range(PARALLEL)}
    assert len(await history_versions(client, id)) == PARALLEL + 1


async def test_concurrent_deletes_write_one_deletion(client: httpx.AsyncClient) -> None:
    id = (await created(client))["id"]
    responses = await asyncio.gather(*[client.delete(f"Patient/{id}") for _ in range(PARALLEL)])
    assert statuses(responses) == {204: PARALLEL}, [r.text for r in responses]
    assert await history_versions(client, id) == [2, 1]


async def test_concurrent_conditional_deletes_and_updates_keep_versions_consecutive(
    client: httpx.AsyncClient,
) -> None:
    system, value = f"urn:uuid:{uuid.uuid4()}", str(uuid.uuid4())
    id = (await created(client, identifier=[{"system": system, "value": value}]))["id"]
    body = {"resourceType": "Patient", "id": id, "identifier": [{"system": system, "value": value}]}
    requests = [
        client.put(f"Patient/{id}", json=body)
        if n % 2
        else client.delete("Patient", params={"identifier": f"{system}|{value}"})
        for n in range(PARALLEL)
    ]
    responses = await asyncio.gather(*requests)
    assert set(statuses(responses)) <= {200, 201, 204}, [r.text for r in responses]
    versions = await history_versions(client, id)
    assert versions == list(range(len(versions), 0, -1))
