"""Delivery survives what goes wrong: a dispatcher stopped mid-delivery and started again
delivers every event (a duplicate carries the same event number), a receiver that is down
gets its backlog in order once it is back, and the subscription says `error` meanwhile."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from .conftest import FAST, Receiver, Start, eventually, status_of, subscribe, subscription


def patient(id: str, n: int) -> dict[str, object]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": f"Nr{n}"}]}


async def test_a_dispatcher_stopped_mid_delivery_and_restarted_delivers_every_event(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    first = await dispatchers()
    id = await subscribe(
        fhir,
        subscription("patient-data-changed", receiver.url, f"Patient?identifier={p}", max_count=3),
    )
    await eventually(lambda: _status(fhir, id, "active"))
    receiver.delay = 1.0  # the receiver is slow: the dispatcher is stopped while it waits
    for n in range(10):
        body = patient(f"{p}-{n}", n) | {"identifier": [{"value": p}]}
        await fhir.put(f"Patient/{p}-{n}", json=body)
    await eventually(lambda: receiver.notifications())
    await first.close()
    receiver.delay = 0.0
    await dispatchers()
    await eventually(lambda: set(receiver.numbers()) == set(range(1, 11)))
    numbers = receiver.numbers()
    assert len(numbers) > 10  # what was in flight was sent again …
    by_number: dict[int, set[str]] = {}
    for note in receiver.notifications():
        for number, focus in zip(note.numbers, note.focus, strict=True):
            by_number.setdefault(number, set()).add(focus)
    assert all(len(focus) == 1 for focus in by_number.values())  # … under the same number
    assert [by_number[n].pop().rsplit("/", 1)[-1] for n in range(1, 11)] == [
        f"{p}-{n}" for n in range(10)
    ]
    first_seen = sorted(set(numbers), key=numbers.index)
    assert first_seen == list(range(1, 11))  # and in order


async def _status(fhir: httpx.AsyncClient, id: str, status: str) -> bool:
    return await status_of(fhir, id) == status


async def test_a_receiver_down_for_a_while_gets_its_backlog_in_order(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    id = await subscribe(
        fhir,
        subscription("patient-data-changed", receiver.url, f"Patient?identifier={p}", max_count=4),
    )
    await eventually(lambda: _status(fhir, id, "active"))
    receiver.stop()
    for n in range(12):
        await fhir.put(
            f"Patient/{p}-{n}", json=patient(f"{p}-{n}", n) | {"identifier": [{"value": p}]}
        )
    await eventually(lambda: _status(fhir, id, "error"))
    error = (await fhir.get(f"Subscription/{id}")).json()["error"]
    assert "ConnectError" in error
    deliveries = (await fhir.get(f"Subscription/{id}/$deliveries")).json()["parameter"]
    failed = [
        {q["name"]: q for q in a["part"]}
        for a in deliveries
        if {q["name"]: q for q in a["part"]}["outcome"]["valueCode"] == "failure"
    ]
    assert len(failed) >= FAST.error_after
    receiver.start()  # back on the same port
    await eventually(lambda: receiver.numbers() == list(range(1, 13)))
    assert all(len(n.numbers) <= 4 for n in receiver.notifications())
    assert await eventually(lambda: _status(fhir, id, "active"))


async def test_an_endpoint_that_answers_errors_is_retried_with_backoff(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    await eventually(lambda: _status(fhir, id, "active"))
    receiver.status = 503
    await fhir.put(f"Patient/{p}", json=patient(p, 1))
    await eventually(lambda: len(receiver.notifications()) >= 3)
    await asyncio.sleep(0.3)
    receiver.status = 200
    await eventually(lambda: _status(fhir, id, "active"))
    attempts = (await fhir.get(f"Subscription/{id}/$deliveries")).json()["parameter"]
    statuses = [{q["name"]: q for q in a["part"]}.get("http-status") for a in attempts]
    assert {"valueInteger": 503, "name": "http-status"} in statuses


async def test_two_nodes_deliver_each_event_once(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    await dispatchers()
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?identifier={p}")
    )
    await eventually(lambda: _status(fhir, id, "active"))
    for n in range(20):
        await fhir.put(
            f"Patient/{p}-{n}", json=patient(f"{p}-{n}", n) | {"identifier": [{"value": p}]}
        )
    await eventually(lambda: len(receiver.numbers()) >= 20)
    await asyncio.sleep(0.5)
    assert receiver.numbers() == list(range(1, 21))
    assert [r.kind for r in receiver.received].count("handshake") == 1
