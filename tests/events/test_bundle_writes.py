"""A Subscription written in a transaction or batch Bundle, or by a conditional PUT, is served
like one written by `POST`/`PUT`/`PATCH Subscription` (flode.events.writes): checked (422
naming the entry, 403), its status a request, its hidden header values kept, handshaken after
the commit and held to the writer's access."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx

from .conftest import TOPICS, Receiver, Start, eventually, status_of, subscription
from .test_rest_hook import lab

SECRET = "Bearer receiver-secret"
TAG = "urn:example:subscriptions"


def tagged(resource: dict[str, Any], key: str) -> dict[str, Any]:
    """The resource with a tag to find it by (an R4 Subscription has no identifier)."""
    meta = resource.setdefault("meta", {})
    meta["tag"] = [{"system": TAG, "code": key}]
    return resource


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], url: str) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PUT", "url": url}}


def patch(url: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}
    return {"resource": binary, "request": {"method": "PATCH", "url": url}}


def created_id(entry: dict[str, Any]) -> str:
    assert entry["response"]["status"].startswith("201"), entry
    location: str = entry["response"]["location"]
    return location.split("/")[1]


async def submit(client: httpx.AsyncClient, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post("", json=body)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entry"]
    return entries


async def _active(client: httpx.AsyncClient, id: str) -> bool:
    return await status_of(client, id) == "active"


async def test_serves_a_subscription_created_in_a_transaction_bundle(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers()
    body = subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    body["status"] = "active"  # a request, like any other: the handshake decides
    entries = await submit(fhir, bundle("transaction", post(body)))
    id = created_id(entries[0])
    await eventually(lambda: receiver.received)
    handshake = receiver.received[0]
    assert handshake.kind == "handshake"
    assert handshake.headers["Authorization"] == SECRET
    await eventually(lambda: _active(fhir, id))
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
    await eventually(lambda: receiver.numbers() == [1])
    assert receiver.notifications()[0].focus[0].endswith(f"Patient/{p}")


async def test_a_subscription_written_in_a_bundle_is_requested_until_its_handshake(
    fhir: httpx.AsyncClient,
) -> None:
    body = subscription("lab-order", "http://127.0.0.1:9/hook") | {"status": "active"}
    body["error"] = "written by the client"
    entries = await submit(fhir, bundle("batch", post(body)))
    id = created_id(entries[0])
    stored = (await fhir.get(f"Subscription/{id}")).json()
    assert stored["status"] == "requested"
    assert "error" not in stored
    status = (await fhir.get(f"Subscription/{id}/$status")).json()
    parameters = status["entry"][0]["resource"]["parameter"]
    assert {"name": "status", "valueCode": "requested"} in parameters


async def test_serves_a_subscription_created_in_a_batch_bundle(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    body = subscription("lab-order", receiver.url)
    entries = await submit(fhir, bundle("batch", post(body)))
    id = created_id(entries[0])
    await eventually(lambda: _active(fhir, id))
    assert [r.kind for r in receiver.received] == ["handshake"]


async def test_an_unservable_subscription_in_a_transaction_is_refused_naming_its_entry(
    fhir: httpx.AsyncClient,
) -> None:
    p = uuid.uuid4().hex[:10]
    patient = tagged({"resourceType": "Patient"}, p)
    bad = tagged(subscription("no-such-topic", "http://127.0.0.1:9/hook"), p)
    response = await fhir.post("", json=bundle("transaction", post(patient), post(bad)))
    assert response.status_code == 422, response.text
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[1]", "Subscription.criteria"]
    assert issue["diagnostics"].startswith("Bundle.entry[1] (POST Subscription)")
    assert "SubscriptionTopic" in issue["diagnostics"]
    for kind in ("Patient", "Subscription"):
        found = await fhir.get(kind, params={"_tag": f"{TAG}|{p}"})
        assert found.json()["total"] == 0, kind


async def test_in_a_batch_only_the_unservable_subscription_fails(
    fhir: httpx.AsyncClient,
) -> None:
    good = subscription("lab-order", "http://127.0.0.1:9/hook")
    bad = subscription("lab-order", "https://10.1.2.3/hook")
    entries = await submit(fhir, bundle("batch", post(good), post(bad)))
    created_id(entries[0])
    assert entries[1]["response"]["status"].startswith("422")
    [issue] = entries[1]["response"]["outcome"]["issue"]
    assert issue["expression"] == ["Bundle.entry[1]", "Subscription.channel.endpoint"]
    assert "not a public address" in issue["diagnostics"]


async def test_a_writer_who_could_never_be_notified_is_refused_in_a_bundle(
    as_token: Any,
) -> None:
    app = as_token("user/Subscription.cruds", "user/Patient.rs")
    body = subscription("lab-result-final", "http://127.0.0.1:9/hook")
    response = await app.post("", json=bundle("transaction", post(body)))
    assert response.status_code == 403, response.text
    [issue] = response.json()["issue"]
    assert issue["expression"][0] == "Bundle.entry[0]"
    assert "Observation" in issue["diagnostics"]


async def test_a_subscription_written_in_a_bundle_keeps_the_writers_access(
    fhir: httpx.AsyncClient, as_token: Any, dispatchers: Start, receiver: Receiver
) -> None:
    p, q = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    app = as_token("patient/Observation.rs", "user/Subscription.cruds", patient=p)
    await dispatchers()
    body = subscription("lab-result-final", receiver.url)
    id = created_id((await submit(app, bundle("transaction", post(body))))[0])
    await eventually(lambda: _active(app, id))
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", q))
    await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p))
    await eventually(lambda: receiver.numbers() == [1])
    assert receiver.notifications()[0].focus[0].endswith(f"Observation/{p}-1")
    assert q not in str([r.body for r in receiver.received])


async def test_a_bundle_put_that_keeps_hidden_header_values_keeps_the_stored_ones(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    id = created_id(
        (await submit(fhir, bundle("transaction", post(subscription("lab-order", receiver.url)))))[
            0
        ]
    )
    await eventually(lambda: _active(fhir, id))
    read = (await fhir.get(f"Subscription/{id}")).json()
    assert read["channel"]["header"] == ["Authorization: ****"]
    read["reason"] = "changed in a Bundle by a client that read it first"
    entries = await submit(fhir, bundle("transaction", put(read, f"Subscription/{id}")))
    assert entries[0]["response"]["status"].startswith("200")
    await eventually(lambda: len(receiver.received) == 2)  # the new handshake
    assert [r.headers["Authorization"] for r in receiver.received] == [SECRET, SECRET]


async def test_a_hidden_header_value_a_new_subscription_cannot_have_is_refused(
    fhir: httpx.AsyncClient,
) -> None:
    body = subscription("lab-order", "http://127.0.0.1:9/hook")
    body["channel"]["header"] = ["Authorization: ****"]
    response = await fhir.post("", json=bundle("transaction", post(body)))
    assert response.status_code == 422, response.text
    [issue] = response.json()["issue"]
    assert issue["expression"] == ["Bundle.entry[0]", "Subscription.channel.header[0]"]


async def test_a_patch_in_a_transaction_is_checked_and_served_again(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    await dispatchers()
    id = created_id(
        (await submit(fhir, bundle("batch", post(subscription("lab-order", receiver.url)))))[0]
    )
    await eventually(lambda: _active(fhir, id))
    unknown = [{"op": "replace", "path": "/criteria", "value": TOPICS + "nothing"}]
    response = await fhir.post("", json=bundle("transaction", patch(f"Subscription/{id}", unknown)))
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"][0] == "Bundle.entry[0]"
    assert (await fhir.get(f"Subscription/{id}/_history")).json()["total"] == 2  # + active
    other = [{"op": "replace", "path": "/criteria", "value": TOPICS + "referral-new"}]
    await submit(fhir, bundle("transaction", patch(f"Subscription/{id}", other)))
    await eventually(lambda: len(receiver.received) == 2)  # handshaken again
    assert receiver.received[1].status["topic"] == TOPICS + "referral-new"
    assert receiver.received[1].headers["Authorization"] == SECRET
    await eventually(lambda: _active(fhir, id))


async def test_serves_a_subscription_written_by_conditional_put(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    """`PUT Subscription?url=…`: the module's one subscription to its endpoint."""
    await dispatchers()
    url = f"Subscription?url={receiver.url}"
    created = await fhir.put(url, json=subscription("lab-order", receiver.url))
    assert created.status_code == 201, created.text
    id = created.json()["id"]
    await eventually(lambda: _active(fhir, id))
    read = (await fhir.get(f"Subscription/{id}")).json()
    read["reason"] = "changed by a conditional update"
    updated = await fhir.put(url, json=read)
    assert updated.status_code == 200, updated.text
    assert updated.json()["id"] == id
    await eventually(lambda: len(receiver.received) == 2)  # the new handshake
    assert [r.headers["Authorization"] for r in receiver.received] == [SECRET, SECRET]
    await eventually(lambda: _active(fhir, id))


async def test_a_conditional_put_of_an_unservable_subscription_is_refused(
    fhir: httpx.AsyncClient,
) -> None:
    key = uuid.uuid4().hex
    body = tagged(subscription("lab-order", "ftp://receiver.example.com/hook"), key)
    response = await fhir.put(f"Subscription?_tag={TAG}|{key}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]
    found = await fhir.get("Subscription", params={"_tag": f"{TAG}|{key}"})
    assert found.json()["total"] == 0


async def test_a_conditional_put_in_a_transaction_is_served(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver
) -> None:
    key = uuid.uuid4().hex
    await dispatchers()
    body = tagged(subscription("lab-order", receiver.url), key)
    entry = put(body, f"Subscription?_tag={TAG}|{key}")
    id = created_id((await submit(fhir, bundle("transaction", entry)))[0])
    await eventually(lambda: _active(fhir, id))
    assert [r.kind for r in receiver.received] == ["handshake"]
