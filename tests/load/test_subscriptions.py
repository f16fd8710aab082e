"""Subscriptions and SubscriptionTopics loaded by `flode load`, on either path: checked and
served as when a client writes them, refused as an invalid resource is, and a Subscription may
name a topic stored before or earlier in the same load."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from rich.console import Console

from events.conftest import REGION_TOPICS, condition_recorded, subscription
from flode.events.topics import TOPIC_BASE
from flode.load import runner
from flode.load.plan import Write
from flode.load.subscriptions import runs

from .conftest import Load

HOOK = "http://127.0.0.1:9/hook"


def ndjson(path: Path, *resources: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(resource) + "\n" for resource in resources))
    return path


def subscribing(id: str, topic_url: str) -> dict[str, Any]:
    """A Subscription with this id to the topic of that canonical URL."""
    return subscription("", HOOK) | {"id": id, "criteria": topic_url}


def new_topic() -> dict[str, Any]:
    return condition_recorded(f"condition-recorded-{uuid.uuid4().hex[:8]}")


def url_of(topic: dict[str, Any]) -> str:
    return REGION_TOPICS + str(topic["id"])


async def served(url: str) -> dict[str, tuple[str, str]]:
    """The subscriptions served: (status, topic) by id."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT id, status, topic FROM subscription ORDER BY id")
    finally:
        await conn.close()
    return {row["id"]: (row["status"], row["topic"]) for row in rows}


async def count(url: str, resource_type: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM resource WHERE resource_type = $1", resource_type
        )
    finally:
        await conn.close()
    return found


async def test_a_subscription_loaded_is_served_even_before_any_server_stored_the_topics(
    load: Load, tmp_path: Path, fresh_url: str
) -> None:
    topic = TOPIC_BASE + "encounter-start"
    path = ndjson(tmp_path / "Subscription.ndjson", subscribing("s1", topic))
    result = await load(path)
    assert (result.status, result.resources) == ("loaded", 1), result.reason
    assert await served(fresh_url) == {"s1": ("requested", topic)}


async def test_a_subscription_to_a_topic_nobody_offers_fails_and_nothing_of_its_chunk_is_written(
    load: Load, tmp_path: Path, fresh_url: str
) -> None:
    path = ndjson(
        tmp_path / "file.ndjson",
        {"resourceType": "Patient", "id": "p1"},
        subscribing("s1", REGION_TOPICS + "nowhere"),
    )
    result = await load(path)
    # Deferred: the topic may be in a file loaded later; the runner fails it when none is.
    assert result.status == "deferred"
    assert result.reason.startswith("line 2 (Subscription/s1): "), result.reason
    assert "canonical URL of a SubscriptionTopic this server offers" in result.reason
    assert result.resources == 0
    assert await count(fresh_url, "Patient") == 0
    assert await served(fresh_url) == {}


async def test_a_topic_and_then_a_subscription_to_it_load_from_one_file(
    load: Load, tmp_path: Path, fresh_url: str
) -> None:
    topic = new_topic()
    path = ndjson(
        tmp_path / "file.ndjson",
        {"resourceType": "Patient", "id": "p1"},
        topic,
        subscribing("s1", url_of(topic)),
    )
    result = await load(path)
    assert (result.status, result.resources) == ("loaded", 3), result.reason
    assert await served(fresh_url) == {"s1": ("requested", url_of(topic))}


async def test_a_subscription_to_a_topic_stored_by_another_writer_loads(
    load: Load, tmp_path: Path, fresh_url: str
) -> None:
    topic = new_topic()
    assert (await load(topic, "topic.json")).status == "loaded"
    # The other loader was opened before the topic was stored.
    path = ndjson(tmp_path / "Subscription.ndjson", subscribing("s1", url_of(topic)))
    result = await load(path, force=True)
    assert result.status == "loaded", result.reason
    assert await served(fresh_url) == {"s1": ("requested", url_of(topic))}


async def test_a_topic_that_cannot_be_served_fails_like_an_invalid_resource(
    load: Load, tmp_path: Path, fresh_url: str
) -> None:
    topic = new_topic()
    for part in topic["extension"]:
        if part["url"].endswith("resourceTrigger"):
            for item in part["extension"]:
                if item["url"] == "resource":
                    item["valueUri"] = "http://hl7.org/fhir/StructureDefinition/Nothing"
    path = ndjson(tmp_path / "Basic.ndjson", {"resourceType": "Patient", "id": "p1"}, topic)
    result = await load(path)
    assert result.status == "failed"
    assert result.reason.startswith(f"line 2 (Basic/{topic['id']}): "), result.reason
    assert "Nothing" in result.reason
    assert await count(fresh_url, "Patient") == 0


def test_a_subscription_after_a_topic_starts_a_chunk_of_its_own() -> None:
    topic = new_topic()

    def write(n: int, resource: dict[str, Any]) -> Write:
        kind = str(resource["resourceType"])
        return Write(f"line {n}", kind, str(resource.get("id", n)), resource)

    writes = [
        write(1, subscribing("s1", TOPIC_BASE + "encounter-start")),
        write(2, {"resourceType": "Basic", "id": "not-a-topic"}),
        write(3, {"resourceType": "Patient", "id": "p1"}),
        write(4, subscribing("s2", TOPIC_BASE + "encounter-start")),
        write(5, topic),
        write(6, {"resourceType": "Patient", "id": "p2"}),
        write(7, subscribing("s3", url_of(topic))),
        write(8, subscribing("s4", url_of(topic))),
    ]
    assert [[w.where for w in run] for run in runs(writes)] == [
        ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6"],
        ["line 7", "line 8"],
    ]


@pytest.mark.parametrize("fast", [False, True], ids=["transactions", "fast"])
def test_a_subscription_whose_topic_is_in_a_later_file_is_loaded_after_it(
    migrated: str, tmp_path: Path, fast: bool
) -> None:
    topic = new_topic()
    files = [
        ndjson(tmp_path / "a-Subscription.ndjson", subscribing("s1", url_of(topic))),
        ndjson(tmp_path / "b-Basic.ndjson", topic),
        ndjson(tmp_path / "c-Subscription.ndjson", subscribing("s2", REGION_TOPICS + "nowhere")),
    ]
    options = runner.Options(fast=fast, workers=1, concurrency=1)
    outcome = runner.run(migrated, tmp_path, files, options, Console(quiet=True))
    first, topics, never = outcome.results
    assert (first.status, topics.status) == ("loaded", "loaded"), first.reason
    assert never.status == "failed"
    assert "canonical URL of a SubscriptionTopic this server offers" in never.reason
    assert never.hint == runner.LOAD_REFERENCED
    assert asyncio.run(served(migrated)) == {"s1": ("requested", url_of(topic))}
