"""Subscriptions and SubscriptionTopics through `$import`: checked and served as if the
importing token had written them through the API, a Subscription's topic possibly in another
input of the same import."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from conftest import Server
from events.conftest import (
    REGION_TOPICS,
    Receiver,
    condition_recorded,
    eventually,
    status_of,
    subscription,
)
from flode.auth.local import issue_local
from flode.events.topics import TOPIC_BASE

from .importing import Files, errors, file_server, kick_off, ndjson, parameters, result, run

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    with file_server() as found:
        yield found


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.start()
    yield found
    found.stop()


@pytest.fixture
async def written(client: httpx.AsyncClient) -> AsyncIterator[list[str]]:
    """What a test imports (`Type/id`), deleted when it ends: the session's server serves the
    Subscriptions and offers the topics of no other test."""
    found: list[str] = []
    yield found
    for reference in reversed(found):  # a topic after its Subscriptions
        await client.delete(reference)


def new_id() -> str:
    return uuid.uuid4().hex[:10]


def subscribing(id: str, topic_url: str, endpoint: str) -> dict[str, Any]:
    return subscription("", endpoint) | {"id": id, "criteria": topic_url}


async def parameter(client: httpx.AsyncClient, id: str, name: str) -> Any:
    """A parameter of the Subscription's `$status`."""
    response = await client.get(f"Subscription/{id}/$status")
    assert response.status_code == 200, response.text
    parameters = response.json()["entry"][0]["resource"]["parameter"]
    return next(p for p in parameters if p["name"] == name)


async def test_an_imported_topic_and_a_subscription_to_it_are_served(
    client: httpx.AsyncClient, files: Files, receiver: Receiver, written: list[str]
) -> None:
    topic = condition_recorded(f"condition-recorded-{new_id()}")
    id = new_id()
    written += [f"Basic/{topic['id']}", f"Subscription/{id}"]
    listed = subscribing(id, REGION_TOPICS + topic["id"], receiver.url)
    # The Subscription's input comes first: it waits for the topic's.
    inputs = [
        ("Subscription", files.add(f"{id}-Subscription.ndjson", ndjson([listed]))),
        ("Basic", files.add(f"{id}-Basic.ndjson", ndjson([topic]))),
    ]
    found = await run(client, parameters(inputs))
    assert [(o["type"], o["count"]) for o in found["output"]] == [("Subscription", 1), ("Basic", 1)]
    assert found["error"] == []

    async def active() -> bool:
        return await status_of(client, id) == "active"

    await eventually(active)  # handshaken
    assert receiver.received[0].kind == "handshake"
    assert (await parameter(client, id, "status"))["valueCode"] == "active"
    assert (await parameter(client, id, "topic"))["valueCanonical"] == REGION_TOPICS + topic["id"]


async def test_an_imported_subscription_to_a_topic_nobody_offers_is_reported_for_its_line(
    client: httpx.AsyncClient, files: Files, written: list[str]
) -> None:
    good, bad = new_id(), new_id()
    written.append(f"Subscription/{good}")
    lines = [
        subscribing(good, TOPIC_BASE + "encounter-start", HOOK),
        subscribing(bad, REGION_TOPICS + "nowhere", HOOK),
    ]
    url = files.add(f"{good}.ndjson", ndjson(lines))
    found = await run(client, parameters([("Subscription", url)]))
    assert found["output"] == [{"type": "Subscription", "url": url, "count": 1}]
    [outcome] = await errors(client, found)
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert diagnostics.startswith(f"line 2 (Subscription/{bad}): "), diagnostics
    assert "canonical URL of a SubscriptionTopic this server offers" in diagnostics
    assert (await client.get(f"Subscription/{bad}")).status_code == 404
    assert (await parameter(client, good, "status"))["valueCode"] in ("requested", "error")


async def test_a_topic_is_imported_only_with_an_administrators_token(
    client: httpx.AsyncClient, server: Server, test_config: Any, files: Files
) -> None:
    topic = condition_recorded(f"condition-recorded-{new_id()}")
    url = files.add(f"{topic['id']}.ndjson", ndjson([topic]))
    scopes = ["system/Basic.cu"]
    auth = issue_local(test_config, server.root_url, scopes, client_id="importer")
    headers = {"Authorization": f"Bearer {auth}"}
    status_url = await kick_off(client, parameters([("Basic", url)]), headers)
    async with httpx.AsyncClient(timeout=30, headers=headers) as importer:
        found = await result(importer, status_url)
        assert found["output"] == [{"type": "Basic", "url": url, "count": 0}]
        [outcome] = await errors(importer, found)
    assert "administrator" in outcome["issue"][0]["diagnostics"]
    assert (await client.get(f"Basic/{topic['id']}")).status_code == 404
