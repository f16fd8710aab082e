"""The values of a Subscription's `channel.header` (the receiver's credentials) never leave
Flöde, except in the deliveries to that receiver (flode.access.credentials)."""

from __future__ import annotations

import uuid

import httpx

from .conftest import Receiver, Start, eventually, subscribe, subscription

SECRET = "Bearer receiver-secret"


async def test_a_read_search_or_history_shows_the_header_names_but_not_their_values(
    fhir: httpx.AsyncClient, subscriptions_off: None
) -> None:
    id = await subscribe(fhir, subscription("lab-result-final", "http://127.0.0.1:9/hook"))
    for url, params in (
        (f"Subscription/{id}", {}),
        (f"Subscription/{id}/_history/1", {}),
        ("Subscription", {"_id": id}),
        (f"Subscription/{id}/_history", {}),
    ):
        response = await fhir.get(url, params=params)
        assert response.status_code == 200, response.text
        assert "receiver-secret" not in response.text, url
        assert '"Authorization: ****"' in response.text, url


async def test_the_representation_a_write_returns_hides_the_values(
    fhir: httpx.AsyncClient, subscriptions_off: None
) -> None:
    response = await fhir.post(
        "Subscription",
        json=subscription("lab-result-final", "http://127.0.0.1:9/hook"),
        headers={"Prefer": "return=representation"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["channel"]["header"] == ["Authorization: ****"]


async def test_the_receiver_still_gets_the_stored_value(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    await subscribe(fhir, subscription("lab-result-final", receiver.url))
    await eventually(lambda: receiver.received)
    assert receiver.received[0].headers["Authorization"] == SECRET


async def test_writing_back_what_was_read_keeps_the_stored_value(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    p = uuid.uuid4().hex[:10]
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    await eventually(lambda: receiver.received)
    read = (await fhir.get(f"Subscription/{id}")).json()
    read["reason"] = "changed by a client that read it first"
    response = await fhir.put(f"Subscription/{id}", json=read)
    assert response.status_code == 200, response.text
    await eventually(lambda: len(receiver.received) == 2)  # the new handshake
    assert [r.headers["Authorization"] for r in receiver.received] == [SECRET, SECRET]


async def test_a_new_value_replaces_the_stored_one(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    id = await subscribe(fhir, subscription("lab-result-final", receiver.url))
    await eventually(lambda: receiver.received)
    body = (await fhir.get(f"Subscription/{id}")).json()
    body["channel"]["header"] = ["Authorization: Bearer rotated"]
    assert (await fhir.put(f"Subscription/{id}", json=body)).status_code == 200
    await eventually(lambda: len(receiver.received) == 2)  # the new handshake
    assert receiver.received[1].headers["Authorization"] == "Bearer rotated"


async def test_a_hidden_value_for_a_header_the_subscription_never_had_is_refused_with_422(
    fhir: httpx.AsyncClient, subscriptions_off: None
) -> None:
    id = await subscribe(fhir, subscription("lab-result-final", "http://127.0.0.1:9/hook"))
    body = (await fhir.get(f"Subscription/{id}")).json()
    body["channel"]["header"].append("X-Api-Key: ****")
    response = await fhir.put(f"Subscription/{id}", json=body)
    assert response.status_code == 422, response.text
    issue = response.json()["issue"][0]
    assert "X-Api-Key" in issue["diagnostics"]
    assert issue["expression"] == ["Subscription.channel.header[1]"]
    stored = (await fhir.get(f"Subscription/{id}/_history")).json()
    assert stored["total"] == 1
