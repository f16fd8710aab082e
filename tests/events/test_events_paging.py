"""`$events` (R4 Subscriptions Backport IG, Subscription/$events) answers in pages: at most
`_count` events (100 unless asked, never more than FLODE_MAX_COUNT), with a `next` link that
continues from the next event number, so a receiver that was down replays everything it missed,
each event once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .conftest import Receiver, Start, eventually, subscription

TAG = "urn:example:events-paging"


async def _with_events(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, count: int
) -> str:
    """A Subscription with `count` events: as many Patients created in one transaction."""
    key = uuid.uuid4().hex
    await dispatchers()
    body = subscription("patient-data-changed", receiver.url, f"Patient?_tag={TAG}|{key}")
    response = await fhir.post("Subscription", json=body)
    assert response.status_code == 201, response.text
    id: str = response.json()["id"]
    patient = {"resourceType": "Patient", "meta": {"tag": [{"system": TAG, "code": key}]}}
    entries = [{"resource": patient, "request": {"method": "POST", "url": "Patient"}}] * count
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    assert (await fhir.post("", json=bundle)).status_code == 200

    async def counted() -> bool:
        status = (await fhir.get(f"Subscription/{id}/$status")).json()
        parameters = status["entry"][0]["resource"]["parameter"]
        found = {p["name"]: p for p in parameters}
        since: str = found["events-since-subscription-start"]["valueString"]
        return since == str(count)

    await eventually(counted, within=60)
    return id


def numbers(bundle: dict[str, Any]) -> list[int]:
    parameters = bundle["entry"][0]["resource"]["parameter"]
    return [
        int(part["valueString"])
        for p in parameters
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]


def next_of(bundle: dict[str, Any]) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == "next"), None)


async def pages(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> list[Any]:
    """Every page, following `next` links from the first."""
    found = []
    response = await client.get(url, params=params)
    while True:
        assert response.status_code == 200, response.text
        found.append(response.json())
        following = next_of(found[-1])
        if following is None:
            return found
        response = await client.get(following)


async def test_250_events_are_replayed_in_pages_none_lost_or_repeated(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    id = await _with_events(fhir, dispatchers, receiver, 250)
    replayed = await pages(fhir, f"Subscription/{id}/$events", {"content": "full-resource"})
    assert [len(numbers(p)) for p in replayed] == [100, 100, 50]  # 100 unless asked
    assert [n for p in replayed for n in numbers(p)] == list(range(1, 251))
    assert next_of(replayed[-1]) is None
    assert all(len(p["entry"]) == len(numbers(p)) + 1 for p in replayed)  # the resources too
    first_next = next_of(replayed[0])
    assert first_next is not None
    assert "eventsSinceNumber=101" in first_next
    assert "content=full-resource" in first_next

    asked = await pages(fhir, f"Subscription/{id}/$events", {"_count": "60"})
    assert [len(numbers(p)) for p in asked] == [60, 60, 60, 60, 10]
    assert [n for p in asked for n in numbers(p)] == list(range(1, 251))


async def test_a_page_stays_within_the_numbers_asked_for(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    id = await _with_events(fhir, dispatchers, receiver, 40)
    params = {"eventsSinceNumber": "10", "eventsUntilNumber": "30", "_count": "15"}
    replayed = await pages(fhir, f"Subscription/{id}/$events", params)
    assert [numbers(p) for p in replayed] == [list(range(10, 25)), list(range(25, 31))]
    following = next_of(replayed[0])
    assert following is not None
    assert "eventsUntilNumber=30" in following
    exact = await pages(fhir, f"Subscription/{id}/$events", {"eventsSinceNumber": "26"})
    assert [numbers(p) for p in exact] == [list(range(26, 41))]


async def test_count_is_capped_at_the_servers_maximum_and_must_be_positive(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    id = await _with_events(fhir, dispatchers, receiver, 3)
    response = await fhir.get(f"Subscription/{id}/$events", params={"_count": "5000"})
    assert response.status_code == 200, response.text
    assert numbers(response.json()) == [1, 2, 3]
    assert "_count=1000" in response.json()["link"][0]["url"]
    refused = await fhir.get(f"Subscription/{id}/$events", params={"_count": "0"})
    assert refused.status_code == 400
    assert (await fhir.get(f"Subscription/{id}/$events", params={"_count": "x"})).status_code == 400
