"""A topic changed or deleted takes effect: the events after an update are matched by the new
criteria; the Subscriptions of a deleted (or retired) topic get status `error` saying why, and
become `active` again once an administrator offers the topic again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .conftest import (
    REGION_TOPICS,
    Define,
    Receiver,
    Start,
    condition,
    condition_recorded,
    eventually,
    status_of,
    subscribe,
)
from .test_topic_resources import _offered
from .test_topic_writes import subscription_to


async def _is(client: httpx.AsyncClient, id: str, status: str) -> bool:
    return await status_of(client, id) == status


async def _subscribed(
    fhir: httpx.AsyncClient, define_topic: Define, dispatchers: Start, receiver: Receiver
) -> tuple[str, str, str]:
    """A topic of a new id, and an active Subscription to it for a new patient."""
    id, p = f"condition-recorded-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:10]
    assert (await define_topic(condition_recorded(id))).status_code == 201
    await dispatchers()
    sub = await subscribe(fhir, subscription_to(id, receiver.url, f"Condition?patient={p}"))
    await eventually(lambda: _is(fhir, sub, "active"))
    return id, p, sub


async def test_the_events_after_a_topic_update_are_matched_by_its_new_criteria(
    fhir: httpx.AsyncClient, define_topic: Define, dispatchers: Start, receiver: Receiver
) -> None:
    id, p, _ = await _subscribed(fhir, define_topic, dispatchers, receiver)
    await fhir.put(f"Condition/{p}-1", json=condition(f"{p}-1", p))
    await eventually(lambda: receiver.numbers() == [1])

    changed = await define_topic(condition_recorded(id, current="clinical-status=resolved"))
    assert changed.status_code == 200, changed.text
    await fhir.put(f"Condition/{p}-2", json=condition(f"{p}-2", p))  # active: no longer
    await fhir.put(f"Condition/{p}-3", json=condition(f"{p}-3", p, "resolved"))

    await eventually(lambda: receiver.numbers() == [1, 2])
    focus = [f.rsplit("/", 1)[-1] for n in receiver.notifications() for f in n.focus]
    assert focus == [f"{p}-1", f"{p}-3"]


async def test_deleting_a_topic_sets_its_subscriptions_to_error_saying_why(
    fhir: httpx.AsyncClient, define_topic: Define, dispatchers: Start, receiver: Receiver
) -> None:
    id, p, sub = await _subscribed(fhir, define_topic, dispatchers, receiver)
    deleted = await fhir.delete(f"Basic/{id}", headers={"Prefer": "return=OperationOutcome"})
    assert deleted.status_code == 200, deleted.text
    warnings = [i for i in deleted.json()["issue"] if i["severity"] == "warning"]
    assert [f"Subscription/{sub}" in w["diagnostics"] for w in warnings] == [True]
    assert REGION_TOPICS + id not in await _offered(fhir)

    stored = (await fhir.get(f"Subscription/{sub}")).json()
    assert stored["status"] == "error"
    assert f"{REGION_TOPICS}{id} is no longer offered" in stored["error"]
    status = (await fhir.get(f"Subscription/{sub}/$status")).json()["entry"][0]["resource"]
    found = {p["name"]: p for p in status["parameter"]}
    assert found["status"]["valueCode"] == "error"
    assert "no longer offered" in found["error"]["valueCodeableConcept"]["text"]

    await fhir.put(f"Condition/{p}-1", json=condition(f"{p}-1", p))  # no topic: no event
    rewritten = await fhir.put(f"Subscription/{sub}", json=stored)
    assert rewritten.status_code == 422, rewritten.text  # its topic is not offered


async def test_a_subscription_comes_back_when_its_topic_is_offered_again(
    fhir: httpx.AsyncClient, define_topic: Define, dispatchers: Start, receiver: Receiver
) -> None:
    id, p, sub = await _subscribed(fhir, define_topic, dispatchers, receiver)
    assert (await fhir.delete(f"Basic/{id}")).status_code == 204
    await eventually(lambda: _is(fhir, sub, "error"))
    await fhir.put(f"Condition/{p}-1", json=condition(f"{p}-1", p))  # while it is gone

    handshakes = len([r for r in receiver.received if r.kind == "handshake"])
    assert (await define_topic(condition_recorded(id))).status_code == 201
    await eventually(lambda: _is(fhir, sub, "active"))
    assert len([r for r in receiver.received if r.kind == "handshake"]) == handshakes + 1

    await fhir.put(f"Condition/{p}-2", json=condition(f"{p}-2", p))
    await eventually(lambda: receiver.numbers() == [1])
    [note] = receiver.notifications()
    assert note.focus[0].endswith(f"Condition/{p}-2")


async def test_retiring_a_topic_withdraws_it_like_a_deletion(
    fhir: httpx.AsyncClient, define_topic: Define, dispatchers: Start, receiver: Receiver
) -> None:
    id, _, sub = await _subscribed(fhir, define_topic, dispatchers, receiver)
    retired = await define_topic(condition_recorded(id, status="retired"))
    assert retired.status_code == 200, retired.text
    assert REGION_TOPICS + id not in await _offered(fhir)
    assert await status_of(fhir, sub) == "error"
    body: Any = subscription_to(id, receiver.url)
    assert (await fhir.post("Subscription", json=body)).status_code == 422
