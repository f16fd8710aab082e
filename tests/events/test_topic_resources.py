"""The topics are stored resources: the shipped ones are written at start-up as the IG's R4
Basic resources, found by searching Basic for the SubscriptionTopic code and read by id; a
restart adds no versions; and what is stored is what every server offers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from flode.config import Config
from flode.events.capability import TOPIC_CANONICAL
from flode.events.topics import TOPIC_BASE, TOPIC_SEARCH, shipped, url_of

from .conftest import REGION_TOPICS, Define, condition_recorded, eventually, running, subscription

SHIPPED = {basic["id"]: basic for basic in shipped()}


def _without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def _offered(client: httpx.AsyncClient) -> set[str]:
    statement = (await client.get("metadata")).json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    return {e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_CANONICAL}


async def test_a_module_finds_the_shipped_topics_by_searching_basic_for_the_topic_code(
    as_token: Any,
) -> None:
    module = as_token("system/Basic.rs")
    response = await module.get("Basic", params=dict([TOPIC_SEARCH, ("_count", "100")]))
    assert response.status_code == 200, response.text
    found = {e["resource"]["id"]: e["resource"] for e in response.json().get("entry", [])}
    assert set(found) == set(SHIPPED)
    assert {url_of(b) for b in found.values()} == {TOPIC_BASE + id for id in SHIPPED}


async def test_each_shipped_topic_is_read_by_its_id_as_it_was_shipped(
    as_token: Any,
) -> None:
    module = as_token("system/Basic.rs")
    for id, basic in SHIPPED.items():
        response = await module.get(f"Basic/{id}")
        assert response.status_code == 200, response.text
        assert _without_meta(response.json()) == basic


async def test_a_restart_writes_no_version_of_a_shipped_topic(
    fhir: httpx.AsyncClient, events_database: str, events_config: Config
) -> None:
    before = {id: (await fhir.get(f"Basic/{id}")).json()["meta"] for id in SHIPPED}
    with running(events_config, events_database) as again:
        async with httpx.AsyncClient(base_url=again.base_url + "/", headers=again.auth) as other:
            assert await _offered(other) >= {TOPIC_BASE + id for id in SHIPPED}
    after = {id: (await fhir.get(f"Basic/{id}")).json()["meta"] for id in SHIPPED}
    assert after == before


async def test_a_shipped_topic_an_administrator_retired_stays_retired_after_a_restart(
    fhir: httpx.AsyncClient, events_database: str, events_config: Config
) -> None:
    retired = SHIPPED["appointment-cancelled"] | {
        "modifierExtension": [
            {
                "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
                "status",
                "valueCode": "retired",
            }
        ]
    }
    written = await fhir.put("Basic/appointment-cancelled", json=retired)
    assert written.status_code == 200, written.text
    try:
        assert TOPIC_BASE + "appointment-cancelled" not in await _offered(fhir)
        with running(events_config, events_database):
            pass
        stored = (await fhir.get("Basic/appointment-cancelled")).json()
        assert stored["meta"]["versionId"] == written.json()["meta"]["versionId"]
        assert stored["modifierExtension"][0]["valueCode"] == "retired"
    finally:
        restored = await fhir.put(
            "Basic/appointment-cancelled", json=SHIPPED["appointment-cancelled"]
        )
        assert restored.status_code == 200, restored.text
    assert TOPIC_BASE + "appointment-cancelled" in await _offered(fhir)


async def test_a_topic_written_on_one_server_is_offered_by_another_within_seconds(
    fhir: httpx.AsyncClient,
    define_topic: Define,
    events_database: str,
    events_config: Config,
) -> None:
    id = f"condition-recorded-{uuid.uuid4().hex[:8]}"
    with running(events_config, events_database) as other_server:
        async with httpx.AsyncClient(
            base_url=other_server.base_url + "/", headers=other_server.auth, timeout=30
        ) as other:
            assert REGION_TOPICS + id not in await _offered(other)
            assert (await define_topic(condition_recorded(id))).status_code == 201
            assert REGION_TOPICS + id in await _offered(fhir)  # here at once

            async def offered_there() -> bool:
                return REGION_TOPICS + id in await _offered(other)

            await eventually(offered_there)
            body = subscription("", "http://127.0.0.1:9/hook") | {"criteria": REGION_TOPICS + id}
            accepted = await other.post("Subscription", json=body)
            assert accepted.status_code == 201, accepted.text

            assert (await fhir.delete(f"Basic/{id}")).status_code == 204

            async def withdrawn_there() -> bool:
                return REGION_TOPICS + id not in await _offered(other)

            await eventually(withdrawn_there)
            refused = await other.post("Subscription", json=body)
            assert refused.status_code == 422, refused.text
