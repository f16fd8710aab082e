"""Retention (flode.events.retention): the change feed loses the rows every consumer is done
with, each subscription keeps its events for `$events` for the retention — delivered or not —
and loses older ones oldest first, delivery attempts go after the retention, a deleted
Subscription's records at once; by the dispatchers' background job and by `flode events prune`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx

from flode.events import retention
from flode.events.dispatcher import Dispatcher
from flode.interactions.services import Services

from .conftest import FAST, Receiver, Start, eventually, status_of, subscribe, subscription
from .test_events_paging import numbers

FLODE = [sys.executable, "-m", "flode"]


def flode(*args: str) -> subprocess.CompletedProcess[str]:
    """`flode …` as an operator runs it, without the test's own FLODE_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLODE_")} | {"COLUMNS": "200"}
    return subprocess.run([*FLODE, *args], capture_output=True, text=True, timeout=120, env=env)


async def _changes(fhir: httpx.AsyncClient, p: str, count: int) -> None:
    for n in range(count):
        body = {"resourceType": "Patient", "id": p, "gender": ("male", "female")[n % 2]}
        assert (await fhir.put(f"Patient/{p}", json=body)).status_code in (200, 201)


async def _subscribed(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, p: str, count: int
) -> str:
    """A subscription to Patient `p`, delivered `count` events by a dispatcher started for it."""
    await dispatchers()
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    await eventually(lambda: _is(fhir, id, "active"))
    await _changes(fhir, p, count)
    await eventually(lambda: _acknowledged(fhir, id, count))
    assert receiver.numbers() == list(range(1, count + 1))
    return id


async def _acknowledged(fhir: httpx.AsyncClient, id: str, number: int) -> bool:
    """Whether the latest delivery attempt recorded is the successful one of event `number`."""
    attempts = (await fhir.get(f"Subscription/{id}/$deliveries")).json().get("parameter", [])
    latest = {p["name"]: p for p in attempts[0]["part"]} if attempts else {}
    last = latest.get("last-event-number", {}).get("valueString")
    outcome: str | None = latest.get("outcome", {}).get("valueCode")
    return last == str(number) and outcome == "success"


async def _is(fhir: httpx.AsyncClient, id: str, status: str) -> bool:
    return await status_of(fhir, id) == status


async def _replayed(fhir: httpx.AsyncClient, id: str) -> list[int]:
    response = await fhir.get(f"Subscription/{id}/$events", params={"_count": "1000"})
    assert response.status_code == 200, response.text
    return numbers(response.json())


async def _prune(services: Services, **kwargs: Any) -> retention.Pruned:
    async with services.store.pool.acquire() as conn:
        pruned = await retention.prune(conn, 30, **kwargs)
    assert pruned is not None
    return pruned


async def _age(services: Services, table: str, days: int, where: str, *args: Any) -> None:
    column = {"subscription_event": "occurred", "subscription_attempt": "at"}[table]
    await services.store.pool.execute(
        f"UPDATE {table} SET {column} = {column} - $1::interval WHERE {where}",
        timedelta(days=days),
        *args,
    )


async def test_keeps_a_subscriptions_events_for_the_retention_and_removes_older_ones(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    id = await _subscribed(fhir, dispatchers, receiver, p, 5)
    await _prune(events_services)
    assert await _replayed(fhir, id) == [1, 2, 3, 4, 5]  # delivered, but within the retention
    await _age(
        events_services, "subscription_event", 31, "subscription_id = $2 AND number <= 3", id
    )
    await _prune(events_services)
    assert await _replayed(fhir, id) == [4, 5]
    status = (await fhir.get(f"Subscription/{id}/$status")).json()["entry"][0]["resource"]
    assert {"name": "events-since-subscription-start", "valueString": "5"} in status["parameter"]
    await _changes(fhir, p, 1)  # numbering and delivery go on
    await eventually(lambda: receiver.numbers()[-1:] == [6])
    assert await _replayed(fhir, id) == [4, 5, 6]


async def test_keeps_the_events_a_receiver_has_not_taken_for_the_retention(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    await dispatchers(replace(FAST, retry_base_seconds=5, retry_max_seconds=5))
    id = await subscribe(
        fhir, subscription("patient-data-changed", receiver.url, f"Patient?_id={p}")
    )
    await eventually(lambda: _is(fhir, id, "active"))
    receiver.status = 503  # down: nothing is acknowledged
    await _changes(fhir, p, 3)
    await eventually(lambda: _replayed_is(fhir, id, [1, 2, 3]))
    await eventually(lambda: receiver.numbers()[:1] == [1])
    await _prune(events_services)
    assert await _replayed(fhir, id) == [1, 2, 3]
    await _prune(events_services, now=await _db_now(events_services) + timedelta(days=31))
    assert await _replayed(fhir, id) == []


async def _db_now(services: Services) -> Any:
    return await services.store.pool.fetchval("SELECT now()")


async def test_removes_the_change_feed_rows_every_consumer_is_done_with(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    started: list[Dispatcher] = []

    async def start(*args: Any, **kwargs: Any) -> Dispatcher:
        started.append(await dispatchers(*args, **kwargs))
        return started[-1]

    await _subscribed(fhir, start, receiver, p, 2)
    for dispatcher in started:
        await dispatcher.close()
    pool = events_services.store.pool
    await _changes(fhir, p, 2)  # not sequenced while no dispatcher runs
    await _prune(events_services)
    cursors = {r["name"]: r["position"] for r in await pool.fetch("SELECT * FROM event_cursor")}
    # Matched, and published to NATS if anything ever was (an earlier test did): removed.
    done_with = min(cursors["match"], cursors["nats"] or cursors["match"])
    left = await pool.fetch("SELECT event FROM outbox WHERE event IS NOT NULL")
    assert all(r["event"] > done_with for r in left)
    rows = await pool.fetch(
        "SELECT event FROM outbox WHERE resource_type = 'Patient' AND resource_id = $1 ORDER BY id",
        p,
    )
    assert [r["event"] for r in rows][-2:] == [None, None]  # not sequenced yet: kept
    # Once the retention is over, an event NATS never took goes too; one not matched never.
    await _prune(events_services, now=await _db_now(events_services) + timedelta(days=31))
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event IS NOT NULL") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE event IS NULL") >= 2
    await dispatchers()
    await eventually(lambda: receiver.numbers()[-2:] == [3, 4])  # numbering goes on


async def test_removes_attempts_older_than_the_retention_and_a_deleted_subscriptions_records(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, events_services: Services
) -> None:
    p, q = uuid.uuid4().hex[:10], uuid.uuid4().hex[:10]
    kept = await _subscribed(fhir, dispatchers, receiver, p, 2)
    other = Receiver()
    other.start()
    try:
        gone = await _subscribed(fhir, dispatchers, other, q, 2)
    finally:
        other.stop()
    assert (await fhir.delete(f"Subscription/{gone}")).status_code == 204
    await _age(events_services, "subscription_attempt", 31, "subscription_id = $2", kept)
    await _changes(fhir, p, 1)
    await eventually(lambda: receiver.numbers()[-1:] == [3])
    removed = (await _prune(events_services)).removed
    assert removed[retention.EVENTS] >= 2  # the deleted one's
    pool = events_services.store.pool
    for table in ("subscription_event", "subscription_attempt"):
        count = f"SELECT count(*) FROM {table} WHERE subscription_id = $1"
        assert await pool.fetchval(count, gone) == 0, table
    deliveries = (await fhir.get(f"Subscription/{kept}/$deliveries")).json()["parameter"]
    assert len(deliveries) == 1  # the handshake and first two notifications were too old
    assert await _replayed(fhir, kept) == [1, 2, 3]


async def test_only_one_prune_runs_at_a_time(
    events_services: Services, events_database: str
) -> None:
    async with events_services.store.pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", retention.LOCK)
        try:
            async with events_services.store.pool.acquire() as conn:
                assert await retention.prune(conn, 30) is None
            args = ("events", "prune", "--database-url", events_database)
            busy = await asyncio.to_thread(flode, *args)
            assert busy.returncode == 1
            assert "Another prune is running" in busy.stderr
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", retention.LOCK)


async def test_the_dispatchers_prune_in_the_background(
    fhir: httpx.AsyncClient, dispatchers: Start, receiver: Receiver, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    id = await _subscribed(fhir, dispatchers, receiver, p, 3)
    await _age(events_services, "subscription_event", 31, "subscription_id = $2", id)
    await dispatchers(replace(FAST, prune_seconds=0.2))
    await eventually(lambda: _replayed_is(fhir, id, []))


async def _replayed_is(fhir: httpx.AsyncClient, id: str, expected: list[int]) -> bool:
    return await _replayed(fhir, id) == expected


async def test_flode_events_prune_removes_with_progress(
    fhir: httpx.AsyncClient,
    dispatchers: Start,
    receiver: Receiver,
    events_services: Services,
    events_database: str,
) -> None:
    p = uuid.uuid4().hex[:10]
    id = await _subscribed(fhir, dispatchers, receiver, p, 3)
    await _age(events_services, "subscription_event", 3, "subscription_id = $2 AND number < 3", id)
    args = ("--database-url", events_database, "--retention-days", "2")
    done = await asyncio.to_thread(flode, "events", "prune", *args)
    assert done.returncode == 0, done.stderr
    assert "subscription events" in done.stderr
    assert "Removed" in done.stderr
    assert await _replayed(fhir, id) == [3]
