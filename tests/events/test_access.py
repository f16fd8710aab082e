"""Notifications are held to the subscriber's access (DESIGN.md principle 4): an event whose
resource the subscriber's token may not read is not sent, not even its id, and not counted."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from flode.interactions.services import Services

from .conftest import Receiver, Start, eventually, status_of, subscribe, subscription
from .test_rest_hook import lab


async def _active(client: httpx.AsyncClient, id: str) -> bool:
    return await status_of(client, id) == "active"


async def test_a_patient_scoped_subscriber_hears_only_of_its_patient(
    fhir: httpx.AsyncClient, as_token: Any, dispatchers: Start, receiver: Receiver
) -> None:
    p, q = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    for patient in (p, q):
        await fhir.put(f"Patient/{patient}", json={"resourceType": "Patient", "id": patient})
    app = as_token("patient/Observation.rs", "user/Subscription.cruds", patient=p)
    await dispatchers()
    id = await subscribe(app, subscription("lab-result-final", receiver.url))
    await eventually(lambda: _active(app, id))
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", q))
    await fhir.put(f"Observation/{p}-1", json=lab(f"{p}-1", p))
    await fhir.put(f"Observation/{q}-2", json=lab(f"{q}-2", q))
    await fhir.put(f"Observation/{p}-2", json=lab(f"{p}-2", p))
    await eventually(lambda: len(receiver.numbers()) == 2)
    notes = receiver.notifications()
    focus = [f.rsplit("/", 1)[-1] for n in notes for f in n.focus]
    assert focus == [f"{p}-1", f"{p}-2"]
    assert receiver.numbers() == [1, 2]
    assert notes[-1].status["events-since-subscription-start"] == "2"
    assert q not in str([n.body for n in receiver.received])


async def test_granular_scopes_filter_notifications(
    fhir: httpx.AsyncClient, as_token: Any, dispatchers: Start, receiver: Receiver
) -> None:
    """A token for `Encounter?class=…|IMP` only hears of inpatient encounters."""
    p = uuid.uuid4().hex[:10]
    act = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    app = as_token(f"user/Encounter.rs?class={act}|IMP", "user/Subscription.cruds")
    await dispatchers()
    id = await subscribe(app, subscription("encounter-end", receiver.url, f"Encounter?patient={p}"))
    await eventually(lambda: _active(app, id))
    for n, code in enumerate(("AMB", "IMP", "EMER", "IMP")):
        body = {
            "resourceType": "Encounter",
            "id": f"{p}-{n}",
            "status": "finished",
            "class": {"system": act, "code": code},
            "subject": {"reference": f"Patient/{p}"},
        }
        await fhir.put(f"Encounter/{p}-{n}", json=body)
    await eventually(lambda: len(receiver.numbers()) == 2)
    focus = [f.rsplit("/", 1)[-1] for n in receiver.notifications() for f in n.focus]
    assert focus == [f"{p}-1", f"{p}-3"]


async def test_access_is_judged_on_the_version_each_event_is_about(
    fhir: httpx.AsyncClient, as_token: Any, dispatchers: Start, receiver: Receiver
) -> None:
    """Events wait while an Observation moves from another patient to the subscriber's: the
    version written for the other patient is not sent, though the resource is readable now,
    and the full resource sent is the version of the event, not the current one."""
    p, q = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    app = as_token("patient/Observation.rs", "user/Subscription.cruds", patient=p)
    dispatcher = await dispatchers()
    id = await subscribe(
        app, subscription("lab-result-final", receiver.url, content="full-resource")
    )
    await eventually(lambda: _active(app, id))
    await dispatcher.close()  # the events wait in the outbox while the resource changes
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", q))  # q's: not for p's app
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", p, status="amended"))
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", p))  # amended → final: p's
    await fhir.put(f"Observation/{q}-1", json=lab(f"{q}-1", p, status="cancelled"))
    await dispatchers()
    await eventually(lambda: len(receiver.numbers()) == 1)
    [note] = receiver.notifications()
    sent = note.body["entry"][1]["resource"]
    assert (sent["meta"]["versionId"], sent["status"]) == ("3", "final")
    assert sent["subject"]["reference"] == f"Patient/{p}"


async def test_subscribing_without_read_access_to_the_topic_is_refused(
    as_token: Any, receiver: Receiver
) -> None:
    app = as_token("user/Subscription.cruds", "user/Patient.rs")
    response = await app.post("Subscription", json=subscription("lab-result-final", receiver.url))
    assert response.status_code == 403
    assert "Observation" in response.json()["issue"][0]["diagnostics"]


async def test_status_needs_read_access_to_the_subscription(
    fhir: httpx.AsyncClient, as_token: Any, receiver: Receiver
) -> None:
    id = await subscribe(fhir, subscription("patient-data-changed", receiver.url))
    outsider = as_token("user/Patient.rs")
    assert (await outsider.get(f"Subscription/{id}/$status")).status_code == 403
    assert (await outsider.get(f"Subscription/{id}/$events")).status_code == 403


async def test_a_disabled_modules_subscriptions_get_no_events(
    fhir: httpx.AsyncClient,
    as_token: Any,
    dispatchers: Start,
    receiver: Receiver,
    events_services: Services,
) -> None:
    p = uuid.uuid4().hex[:10]
    client_id = f"disabled-{p}"
    await events_services.store.pool.execute(
        "INSERT INTO auth_client (id, name, scopes, enabled) VALUES ($1, $1, $2, false)",
        client_id,
        ["system/*.cruds"],
    )
    disabled = as_token("system/*.cruds", client_id=client_id)
    await dispatchers()
    await subscribe(
        disabled, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    witness = Receiver()
    witness.start()
    try:
        id = await subscribe(
            fhir, subscription("patient-data-changed", witness.url, f"Patient?_id={p}")
        )
        await eventually(lambda: _active(fhir, id))
        await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
        await eventually(lambda: witness.numbers() == [1])
    finally:
        witness.stop()
    assert receiver.numbers() == []
