"""An administrator defines topics (R5 SubscriptionTopic as the IG's R4 Basic): a topic they
write is offered at once and its Subscriptions are notified end to end; anyone else is refused
with 403, and a topic that cannot be served with 422 naming each problem — on every write path,
and with nothing written."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from flode.events.topics import TOPIC_BASE

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
    subscription,
)
from .test_topic_resources import _offered

TOPIC_URL = "Basic.extension('SubscriptionTopic.url')"
TRIGGER = "Basic.extension('SubscriptionTopic.resourceTrigger')"


def _new_id() -> str:
    return f"condition-recorded-{uuid.uuid4().hex[:8]}"


def _without_id(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "id"}


def subscription_to(id: str, endpoint: str, *filters: str) -> dict[str, Any]:
    return subscription("", endpoint, *filters) | {"criteria": REGION_TOPICS + id}


def _trigger(topic: dict[str, Any]) -> list[dict[str, Any]]:
    [found] = [e for e in topic["extension"] if e["url"].endswith("resourceTrigger")]
    parts: list[dict[str, Any]] = found["extension"]
    return parts


def _set(parts: list[dict[str, Any]], url: str, **value: Any) -> None:
    parts[:] = [p for p in parts if p["url"] != url] + [{"url": url, **value}]


async def test_an_administrators_topic_notifies_its_subscribers_end_to_end(
    fhir: httpx.AsyncClient,
    as_token: Any,
    define_topic: Define,
    dispatchers: Start,
    receiver: Receiver,
) -> None:
    id, p = _new_id(), uuid.uuid4().hex[:10]
    written = await define_topic(condition_recorded(id))
    assert written.status_code == 201, written.text
    assert REGION_TOPICS + id in await _offered(fhir)

    module = as_token("system/Condition.rs", "system/Subscription.cruds")
    await dispatchers()
    sub = await subscribe(module, subscription_to(id, receiver.url, f"Condition?patient={p}"))
    await eventually(lambda: _is(module, sub, "active"))

    await fhir.put(f"Condition/{p}-1", json=condition(f"{p}-1", p, "resolved"))
    await fhir.put(f"Condition/{p}-2", json=condition(f"{p}-2", "someone-else"))
    await fhir.put(f"Condition/{p}-3", json=condition(f"{p}-3", p))
    await fhir.put(f"Condition/{p}-1", json=condition(f"{p}-1", p))  # an update: not a trigger

    await eventually(lambda: receiver.numbers() == [1])
    [note] = receiver.notifications()
    assert note.status["topic"] == REGION_TOPICS + id
    assert [f.rsplit("/", 2)[-2:] for f in note.focus] == [["Condition", f"{p}-3"]]


async def _is(client: httpx.AsyncClient, id: str, status: str) -> bool:
    return await status_of(client, id) == status


def _forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "administrator" in outcome["issue"][0]["diagnostics"]


async def test_a_module_token_may_not_create_update_or_delete_a_topic(
    fhir: httpx.AsyncClient, as_token: Any
) -> None:
    module = as_token("system/Basic.cruds")
    id = _new_id()
    _forbidden(await module.put(f"Basic/{id}", json=condition_recorded(id)))
    _forbidden(await module.post("Basic", json=_without_id(condition_recorded(id))))
    assert (await fhir.get(f"Basic/{id}")).status_code == 404
    lab_order = (await fhir.get("Basic/lab-order")).json()
    _forbidden(await module.put("Basic/lab-order", json=lab_order))
    _forbidden(
        await module.patch(
            "Basic/lab-order",
            json=[{"op": "replace", "path": "/extension/3/valueString", "value": "Lab"}],
            headers={"Content-Type": "application/json-patch+json"},
        )
    )
    _forbidden(await module.delete("Basic/lab-order"))
    after = (await fhir.get("Basic/lab-order")).json()
    assert after["meta"]["versionId"] == lab_order["meta"]["versionId"]


async def test_a_module_token_may_still_write_a_basic_that_is_no_topic(as_token: Any) -> None:
    module = as_token("system/Basic.cruds")
    other = {"resourceType": "Basic", "code": {"text": "a note"}}
    response = await module.post("Basic", json=other)
    assert response.status_code == 201, response.text
    assert (await module.delete(f"Basic/{response.json()['id']}")).status_code == 204


async def test_a_topic_in_a_transaction_of_a_module_fails_the_bundle(
    fhir: httpx.AsyncClient, as_token: Any
) -> None:
    module = as_token("system/Basic.cruds", "system/Patient.cruds")
    id, p = _new_id(), uuid.uuid4().hex[:10]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": p},
                "request": {"method": "PUT", "url": f"Patient/{p}"},
            },
            {
                "resource": condition_recorded(id),
                "request": {"method": "PUT", "url": f"Basic/{id}"},
            },
        ],
    }
    response = await module.post("", json=bundle)
    assert response.status_code == 403, response.text
    assert "Bundle.entry[1]" in response.text
    assert (await fhir.get(f"Patient/{p}")).status_code == 404
    assert (await fhir.get(f"Basic/{id}")).status_code == 404


def _without_url(topic: dict[str, Any]) -> None:
    topic["extension"] = [e for e in topic["extension"] if not e["url"].endswith(".url")]


def _without_trigger(topic: dict[str, Any]) -> None:
    topic["extension"] = [e for e in topic["extension"] if "resourceTrigger" not in e["url"]]


def _unknown_type(topic: dict[str, Any]) -> None:
    _set(_trigger(topic), "resource", valueUri="http://hl7.org/fhir/StructureDefinition/Sickness")


def _unknown_interaction(topic: dict[str, Any]) -> None:
    _trigger(topic).append({"url": "supportedInteraction", "valueCode": "read"})


def _criteria(name: str, text: str) -> Any:
    def change(topic: dict[str, Any]) -> None:
        parts = _trigger(topic)
        [query] = [p for p in parts if p["url"] == "queryCriteria"]
        _set(query["extension"], name, valueString=text)

    return change


def _fhirpath(topic: dict[str, Any]) -> None:
    _trigger(topic).append(
        {"url": "fhirPathCriteria", "valueString": "%current.clinicalStatus.exists()"}
    )


def _unknown_filter(topic: dict[str, Any]) -> None:
    [filters] = [e for e in topic["extension"] if e["url"].endswith("canFilterBy")]
    _set(filters["extension"], "filterParameter", valueString="shoe-size")


@pytest.mark.parametrize(
    ("change", "expression", "words"),
    [
        (_without_url, TOPIC_URL, ["canonical url"]),
        (_without_trigger, TRIGGER, ["resourceTrigger"]),
        (_unknown_type, f"{TRIGGER}[0].extension('resource')", ["Sickness"]),
        (_unknown_interaction, f"{TRIGGER}[0].extension('supportedInteraction')", ["'read'"]),
        (
            _criteria("current", "clinical-status=active&shoe-size=42"),
            f"{TRIGGER}[0].extension('queryCriteria').extension('current')",
            ["shoe-size"],
        ),
        (
            _criteria("previous", "Observation?status=final"),
            f"{TRIGGER}[0].extension('queryCriteria').extension('previous')",
            ["must search Condition"],
        ),
        (
            _criteria("current", "_count=10"),
            f"{TRIGGER}[0].extension('queryCriteria').extension('current')",
            ["criteria only"],
        ),
        (
            _criteria("current", "onset-date=yesterday"),
            f"{TRIGGER}[0].extension('queryCriteria').extension('current')",
            ["yesterday"],
        ),
        (
            _fhirpath,
            f"{TRIGGER}[0].extension('fhirPathCriteria')",
            ["fhirPathCriteria are not supported", "queryCriteria"],
        ),
        (
            _unknown_filter,
            "Basic.extension('SubscriptionTopic.canFilterBy')[0].extension('filterParameter')",
            ["shoe-size"],
        ),
    ],
)
async def test_a_topic_that_cannot_be_served_is_refused_naming_the_problem(
    fhir: httpx.AsyncClient, change: Any, expression: str, words: list[str]
) -> None:
    id = _new_id()
    topic = copy.deepcopy(condition_recorded(id))
    change(topic)
    response = await fhir.put(f"Basic/{id}", json=topic)
    assert response.status_code == 422, response.text
    issues = response.json()["issue"]
    assert [i["expression"] for i in issues] == [[expression]]
    for word in words:
        assert word in issues[0]["diagnostics"]
    assert (await fhir.get(f"Basic/{id}")).status_code == 404


async def test_every_problem_of_a_topic_is_named_at_once(fhir: httpx.AsyncClient) -> None:
    id = _new_id()
    topic = copy.deepcopy(condition_recorded(id))
    _without_url(topic)
    _unknown_interaction(topic)
    _fhirpath(topic)
    response = await fhir.post("Basic", json=_without_id(topic))
    assert response.status_code == 422, response.text
    assert len(response.json()["issue"]) == 3


async def test_a_url_another_active_topic_offers_is_refused(fhir: httpx.AsyncClient) -> None:
    id = _new_id()
    topic = condition_recorded(id)
    [url] = [e for e in topic["extension"] if e["url"].endswith(".url")]
    url["valueUri"] = TOPIC_BASE + "lab-order"
    response = await fhir.put(f"Basic/{id}", json=topic)
    assert response.status_code == 422, response.text
    [issue] = response.json()["issue"]
    assert issue["expression"] == [TOPIC_URL]
    assert "Basic/lab-order" in issue["diagnostics"]
    assert (await fhir.get(f"Basic/{id}")).status_code == 404


async def test_a_conditional_update_and_a_patch_of_a_topic_are_checked_too(
    fhir: httpx.AsyncClient, define_topic: Define
) -> None:
    id = _new_id()
    assert (await define_topic(condition_recorded(id))).status_code == 201
    broken = copy.deepcopy(condition_recorded(id))
    _unknown_type(broken)
    conditional = await fhir.put("Basic", params={"_id": id}, json=broken)
    assert conditional.status_code == 422, conditional.text
    patched = await fhir.patch(
        f"Basic/{id}",
        json=[{"op": "replace", "path": "/extension/2/extension/1/valueUri", "value": "Sickness"}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patched.status_code == 422, patched.text
    assert (await fhir.get(f"Basic/{id}")).json()["meta"]["versionId"] == "1"


async def test_a_draft_topic_is_stored_but_not_offered(
    fhir: httpx.AsyncClient, define_topic: Define
) -> None:
    id = _new_id()
    draft = condition_recorded(id, status="draft")
    assert (await define_topic(draft)).status_code == 201
    again = await fhir.put(f"Basic/{id}", json=draft, headers={"Prefer": "return=OperationOutcome"})
    assert again.status_code == 200, again.text
    assert any("not offered" in i["diagnostics"] for i in again.json()["issue"])
    assert REGION_TOPICS + id not in await _offered(fhir)
    refused = await fhir.post("Subscription", json=subscription_to(id, "http://127.0.0.1:9/"))
    assert refused.status_code == 422, refused.text


def _documented_topic() -> dict[str, Any]:
    """The example Basic of docs/events.md ("Defining a topic"), as a reader copies it."""
    text = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    start = text.index("curl -X PUT http://127.0.0.1:8080/fhir/Basic/condition-recorded")
    body = text[start:].split(" -d '", 1)[1].split("'\n```", 1)[0]
    found: dict[str, Any] = json.loads(body)
    return found


async def test_the_documented_example_topic_is_accepted_and_offered(
    fhir: httpx.AsyncClient, define_topic: Define
) -> None:
    topic = _documented_topic()
    written = await define_topic(topic)
    assert written.status_code in (200, 201), written.text
    assert "http://region.example.se/SubscriptionTopic/condition-recorded" in await _offered(fhir)
