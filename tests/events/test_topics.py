"""The topics: published as the IG's R4 Basic resources, read back into what runs, and listed
in the CapabilityStatement with the IG's topic-canonical extension."""

from __future__ import annotations

import httpx

from flode.events.capability import TOPIC_CANONICAL
from flode.events.topics import TOPIC_BASE, Topics, topic_of

EXPECTED = {
    "encounter-start",
    "encounter-end",
    "patient-admission",
    "patient-discharge",
    "lab-result-final",
    "referral-new",
    "lab-order",
    "medication-order-new",
    "appointment-booked",
    "appointment-cancelled",
    "patient-data-changed",
}


def test_every_topic_is_a_backported_subscription_topic() -> None:
    topics = Topics.builtin()
    assert {url.removeprefix(TOPIC_BASE) for url in topics.urls} == EXPECTED
    for basic in topics.resources:
        assert basic["resourceType"] == "Basic"
        assert basic["code"]["coding"][0]["code"] == "SubscriptionTopic"
        assert topic_of(basic) == topics.by_url[topic_of(basic).url]


def test_lab_results_trigger_on_observations_and_reports_becoming_final() -> None:
    topic = Topics.builtin().get(TOPIC_BASE + "lab-result-final")
    assert topic is not None
    assert topic.resource_types == {"Observation", "DiagnosticReport"}
    trigger = topic.triggers[0]
    assert trigger.interactions == ("create", "update")
    assert trigger.criteria is not None
    assert trigger.criteria.previous == "status:not=final"
    assert trigger.criteria.require_both


async def test_the_capability_statement_lists_the_topics(fhir: httpx.AsyncClient) -> None:
    statement = (await fhir.get("metadata")).json()
    [entry] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    listed = {e["valueCanonical"] for e in entry["extension"] if e["url"] == TOPIC_CANONICAL}
    assert listed == set(Topics.builtin().urls)
    assert {o["name"] for o in entry["operation"]} >= {"status", "events"}
