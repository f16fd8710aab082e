"""A Subscription this server cannot serve is refused with 422 and an OperationOutcome that
says why — before anything is written — and so is an endpoint that would let a client make the
server send patient data into its own network (SSRF). Nothing is sent to a refused address."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from flode.events.endpoints import EndpointPolicy

from .conftest import Receiver, subscribe, subscription

HOOK = "https://receiver.example.com/hook"


def refused(response: httpx.Response, *words: str) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    issues: list[dict[str, Any]] = response.json()["issue"]
    text = " ".join(i["diagnostics"] for i in issues)
    for word in words:
        assert word in text, text
    return issues


async def test_an_unknown_topic_is_refused_and_the_topics_named(fhir: httpx.AsyncClient) -> None:
    body = subscription("no-such-topic", HOOK)
    issues = refused(await fhir.post("Subscription", json=body), "SubscriptionTopic", "lab-")
    assert issues[0]["expression"] == ["Subscription.criteria"]


@pytest.mark.parametrize(
    ("filter", "words"),
    [
        ("Patient?_id=1", ["Observation", "DiagnosticReport"]),
        ("Observation?nonsense=1", ["nonsense"]),
        ("Observation?_count=10", ["criteria only"]),
        ("Observation?date=notadate", ["notadate"]),
    ],
)
async def test_a_filter_that_is_no_search_on_the_topics_types_is_refused(
    fhir: httpx.AsyncClient, filter: str, words: list[str]
) -> None:
    body = subscription("lab-result-final", HOOK, filter)
    refused(await fhir.post("Subscription", json=body), *words)


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("http://receiver.example.com/hook", ["https"]),
        ("https://10.1.2.3/hook", ["10.1.2.3", "not a public address"]),
        ("https://192.168.0.10/hook", ["not a public address"]),
        ("https://169.254.169.254/latest/meta-data", ["not a public address"]),
        ("https://[fd00::1]/hook", ["not a public address"]),
        ("https://[::ffff:10.0.0.1]/hook", ["not a public address"]),
        ("https://user:secret@receiver.example.com/hook", ["user name"]),
        ("ftp://receiver.example.com/hook", ["https"]),
        ("relative/hook", ["https"]),
        ("not a url", ["url"]),
    ],
)
async def test_endpoints_outside_the_allow_list_are_refused(
    fhir: httpx.AsyncClient, endpoint: str, words: list[str]
) -> None:
    issues = refused(
        await fhir.post("Subscription", json=subscription("lab-order", endpoint)), *words
    )
    assert issues[0]["expression"] == ["Subscription.channel.endpoint"]


def test_the_allow_list_admits_hosts_and_networks() -> None:
    policy = EndpointPolicy(["localhost", "10.20.0.0/16", "hooks.internal"])
    assert policy.check("http://localhost:8080/x") is None
    assert policy.check("http://10.20.3.4/x") is None
    assert policy.check("https://10.21.3.4/x") is not None
    assert policy.check("http://hooks.internal/x") is None
    assert policy.check("http://127.0.0.1/x") is not None  # loopback is not on this list
    assert policy.check("https://93.184.216.34/x") is None


async def test_a_name_resolving_to_a_private_address_is_refused_before_sending() -> None:
    policy = EndpointPolicy([])
    assert "resolves to 127.0.0.1" in str(await policy.resolve("https://localhost/hook"))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"channel": {"type": "email", "endpoint": "mailto:x@example.com"}}, ["channel type"]),
        ({"channel": {"type": "rest-hook"}}, ["endpoint"]),
        (
            {"channel": {"type": "rest-hook", "endpoint": HOOK, "header": ["no colon"]}},
            ["Name: value"],
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": HOOK, "payload": "application/xml"}},
            ["payload"],
        ),
        ({"end": "yesterday"}, []),
    ],
)
async def test_bad_channels_are_refused(
    fhir: httpx.AsyncClient, change: dict[str, Any], words: list[str]
) -> None:
    body = subscription("lab-order", HOOK) | change
    refused(await fhir.post("Subscription", json=body), *words)


async def test_bad_payload_content_and_numbers_are_refused(fhir: httpx.AsyncClient) -> None:
    body = subscription("lab-order", HOOK, content="everything", max_count=5000)
    refused(await fhir.post("Subscription", json=body), "payload content", "max count")


async def test_an_update_is_checked_the_same_way(
    fhir: httpx.AsyncClient, receiver: Receiver
) -> None:
    id = await subscribe(fhir, subscription("lab-order", receiver.url))
    body = subscription("lab-order", "https://10.0.0.1/hook") | {"id": id}
    refused(await fhir.put(f"Subscription/{id}", json=body), "not a public address")
    patch = [{"op": "replace", "path": "/channel/endpoint", "value": "https://10.0.0.1/x"}]
    response = await fhir.patch(
        f"Subscription/{id}",
        content=__import__("json").dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    refused(response, "not a public address")
    assert (await fhir.get(f"Subscription/{id}")).json()["meta"]["versionId"] == "1"


async def test_a_client_status_other_than_off_is_a_request(
    fhir: httpx.AsyncClient, receiver: Receiver
) -> None:
    body = subscription("lab-order", receiver.url) | {"status": "active"}
    response = await fhir.post("Subscription", json=body)
    assert response.status_code == 201
    assert response.json()["status"] == "requested"


async def test_a_core_r4_subscription_is_stored_as_written_and_said_not_to_be_served(
    fhir: httpx.AsyncClient,
) -> None:
    classic = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Monitor new neonatal function",
        "criteria": "Observation?code=http://loinc.org|1975-2",
        "channel": {"type": "rest-hook", "endpoint": "https://biliwatch.example/notify"},
    }
    response = await fhir.post(
        "Subscription", json=classic, headers={"Prefer": "return=OperationOutcome"}
    )
    assert response.status_code == 201, response.text
    (issue,) = response.json()["issue"]
    assert issue["severity"] == "warning"
    assert "SubscriptionTopic" in issue["diagnostics"]
    stored = (await fhir.get(response.headers["location"].split("/_history")[0])).json()
    assert stored["status"] == "requested"
    assert stored["criteria"] == classic["criteria"]
