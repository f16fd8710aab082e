"""rest-hook subscriptions end to end (R4 Subscriptions Backport IG): a real receiver on the
loopback interface gets the handshake, then notification Bundles of exactly the events the
topic, the filters and the subscriber's access select, numbered from 1."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .conftest import Receiver, Start, eventually, status_of, subscribe, subscription

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def lab(id: str, patient: str, status: str = "final", category: str = "laboratory") -> Any:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def test_handshake_activates_and_notifications_follow_the_topic(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    id = await subscribe(fhir, subscription("lab-result-final", receiver.url))
    await eventually(lambda: receiver.received)
    handshake = receiver.received[0]
    assert handshake.kind == "handshake"
    assert handshake.body["type"] == "history"
    assert handshake.headers["Authorization"] == "Bearer receiver-secret"
    assert handshake.status["events-since-subscription-start"] == "0"
    assert handshake.status["subscription"].endswith(f'/Subscription/{id}"}}')
    await eventually(lambda: _is(fhir, id, "active"))

    await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p, status="preliminary"))
    await fhir.put(f"Observation/{p}-2", json=lab(f"{p}-2", p, category="vital-signs"))
    await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p))  # preliminary → final
    await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p) | {"issued": "2024-01-01"})
    await fhir.put(f"Observation/{p}-3", json=lab(f"{p}-3", p))  # created final

    await eventually(lambda: len(receiver.numbers()) == 2)
    notes = receiver.notifications()
    assert receiver.numbers() == [1, 2]
    focus = [f for n in notes for f in n.focus]
    assert [f.rsplit("/", 2)[-2:] for f in focus] == [
        ["Observation", f"{p}-1"],
        ["Observation", f"{p}-3"],
    ]
    last = notes[-1]
    assert last.status["events-since-subscription-start"] == "2"
    assert last.status["status"] == "active"
    entry = last.body["entry"][-1]
    assert "resource" not in entry  # id-only
    assert entry["fullUrl"] == focus[-1]
    assert entry["request"] == {"method": "PUT", "url": f"Observation/{p}-3"}
    assert entry["response"]["status"] == "201"


async def _is(fhir: httpx.AsyncClient, id: str, status: str) -> bool:
    return await status_of(fhir, id) == status


async def test_filters_and_payload_content(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p, q = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    await dispatchers()
    full = await subscribe(
        fhir,
        subscription(
            "lab-result-final", receiver.url, f"Observation?patient={p}", content="full-resource"
        ),
    )
    empty_receiver = Receiver()
    empty_receiver.start()
    try:
        empty = await subscribe(
            fhir,
            subscription(
                "lab-result-final",
                empty_receiver.url,
                f"Observation?subject=Patient/{q}",
                content="empty",
            ),
        )
        await eventually(lambda: _is(fhir, full, "active"))
        await eventually(lambda: _is(fhir, empty, "active"))
        await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p))
        await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", q))
        await eventually(lambda: receiver.notifications() and empty_receiver.notifications())
        [note] = receiver.notifications()
        assert note.focus[0].endswith(f"Observation/{p}-1")
        resource = note.body["entry"][1]["resource"]
        assert (resource["id"], resource["meta"]["versionId"]) == (f"{p}-1", "1")
        [blank] = empty_receiver.notifications()
        assert (blank.numbers, blank.focus) == ([1], [])
        assert len(blank.body["entry"]) == 1
    finally:
        empty_receiver.stop()


async def test_status_events_and_deliveries_operations(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    id = await subscribe(
        fhir, subscription("encounter-start", receiver.url, f"Encounter?patient={p}")
    )
    await eventually(lambda: _is(fhir, id, "active"))
    for n in range(3):
        body = {
            "resourceType": "Encounter",
            "id": f"{p}-{n}",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{p}"},
        }
        await fhir.put(f"Encounter/{p}-{n}", json=body)
    await eventually(lambda: len(receiver.numbers()) == 3)

    status = (await fhir.get(f"Subscription/{id}/$status")).json()
    assert status["type"] == "searchset"
    parameters = {x["name"]: x for x in status["entry"][0]["resource"]["parameter"]}
    assert parameters["status"]["valueCode"] == "active"
    assert parameters["type"]["valueCode"] == "query-status"
    assert parameters["events-since-subscription-start"]["valueString"] == "3"
    listed = (await fhir.get("Subscription/$status", params={"status": "active"})).json()
    assert any(
        p["valueReference"]["reference"].endswith(f"/Subscription/{id}")
        for e in listed["entry"]
        for p in e["resource"]["parameter"]
        if p["name"] == "subscription"
    )

    replay = (
        await fhir.get(
            f"Subscription/{id}/$events",
            params={"eventsSinceNumber": "2", "eventsUntilNumber": "3", "content": "full-resource"},
        )
    ).json()
    assert replay["type"] == "history"
    numbers = [
        part["valueString"]
        for x in replay["entry"][0]["resource"]["parameter"]
        if x["name"] == "notification-event"
        for part in x["part"]
        if part["name"] == "event-number"
    ]
    assert numbers == ["2", "3"]
    assert [e["resource"]["id"] for e in replay["entry"][1:]] == [f"{p}-1", f"{p}-2"]

    deliveries = (await fhir.get(f"Subscription/{id}/$deliveries")).json()
    attempts = [{q["name"]: q for q in a["part"]} for a in deliveries["parameter"]]
    assert {a["type"]["valueCode"] for a in attempts} >= {"handshake", "event-notification"}
    assert all(a["outcome"]["valueCode"] == "success" for a in attempts)
    assert all(a["http-status"]["valueInteger"] == 200 for a in attempts)
    assert all(a["latency"]["valueDecimal"] >= 0 for a in attempts)


async def test_heartbeats_when_nothing_happens(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    id = await subscribe(fhir, subscription("appointment-booked", receiver.url, heartbeat=1))
    await eventually(lambda: len([r for r in receiver.received if r.kind == "heartbeat"]) >= 2)
    assert await status_of(fhir, id) == "active"


async def test_a_deleted_subscription_is_no_longer_notified(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    await eventually(lambda: _is(fhir, id, "active"))
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
    await eventually(lambda: receiver.numbers() == [1])
    await fhir.delete(f"Patient/{p}")
    await eventually(lambda: receiver.numbers() == [1, 2])
    deletion = receiver.notifications()[-1].body["entry"][1]
    assert deletion["request"] == {"method": "DELETE", "url": f"Patient/{p}"}
    assert deletion["response"]["status"] == "204"
    assert (await fhir.delete(f"Subscription/{id}")).status_code == 204
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p, "active": True})
    other = Receiver()
    other.start()
    try:  # a later subscription sees the change; the deleted one does not
        later = await subscribe(
            fhir, subscription("patient-data-changed", other.url, f"Patient?_id={p}")
        )
        await eventually(lambda: _is(fhir, later, "active"))
        await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p, "active": False})
        await eventually(lambda: other.numbers() == [1])
    finally:
        other.stop()
    assert receiver.numbers() == [1, 2]


async def test_an_update_moves_the_subscription_with_a_new_handshake(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    body = subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    id = await subscribe(fhir, body)
    await eventually(lambda: _is(fhir, id, "active"))
    moved = Receiver()
    moved.start()
    try:
        body = subscription("patient-data-changed", moved.url, f"Patient?_id={p}") | {"id": id}
        response = await fhir.put(f"Subscription/{id}", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "requested"
        await eventually(lambda: [r.kind for r in moved.received] == ["handshake"])
        await eventually(lambda: _is(fhir, id, "active"))
        await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
        await eventually(lambda: moved.numbers() == [1])
        assert receiver.numbers() == []
    finally:
        moved.stop()
