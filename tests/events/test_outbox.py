"""The change feed: every committed change appends an outbox event in its own transaction, and
sequencing numbers them without ever skipping one (docs/storage.md "Outbox")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx

from flode.events import sequencer
from flode.events.outbox import COLUMNS, TABLE, outbox_rows
from flode.interactions.services import Services


async def outbox_of(services: Services, resource_type: str, id: str) -> list[dict[str, Any]]:
    rows = await services.store.pool.fetch(
        """SELECT version, action, patients, event FROM outbox
           WHERE resource_type = $1 AND resource_id = $2 ORDER BY version""",
        resource_type,
        id,
    )
    return [dict(r) for r in rows]


async def sequence_all(services: Services) -> None:
    async with services.store.pool.acquire() as conn:
        while True:
            async with conn.transaction():
                if not await sequencer.sequence(conn):
                    return


async def test_create_update_delete_each_append_one_event_with_the_patients(
    fhir: httpx.AsyncClient, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
    observation = {
        "resourceType": "Observation",
        "id": f"{p}-o",
        "status": "preliminary",
        "code": {"text": "Hb"},
        "subject": {"reference": f"Patient/{p}"},
    }
    assert (await fhir.put(f"Observation/{p}-o", json=observation)).status_code == 201
    observation["status"] = "final"
    assert (await fhir.put(f"Observation/{p}-o", json=observation)).status_code == 200
    assert (await fhir.delete(f"Observation/{p}-o")).status_code == 204
    assert (await fhir.put(f"Observation/{p}-o", json=observation)).status_code == 201
    found = await outbox_of(events_services, "Observation", f"{p}-o")
    assert [(r["version"], r["action"], r["patients"]) for r in found] == [
        (1, "create", [p]),
        (2, "update", [p]),
        (3, "delete", [p]),
        (4, "create", [p]),
    ]
    assert [r["patients"] for r in await outbox_of(events_services, "Patient", p)] == [[p]]


async def test_a_transaction_bundle_appends_an_event_per_entry_and_a_failed_one_none(
    fhir: httpx.AsyncClient, events_services: Services
) -> None:
    p = uuid.uuid4().hex[:10]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                "resource": {"resourceType": "Patient", "id": f"{p}-{n}"},
                "request": {"method": "PUT", "url": f"Patient/{p}-{n}"},
            }
            for n in range(3)
        ],
    }
    assert (await fhir.post("", json=bundle)).status_code == 200
    for n in range(3):
        assert len(await outbox_of(events_services, "Patient", f"{p}-{n}")) == 1
    bundle["entry"].append(  # type: ignore[attr-defined]
        {"request": {"method": "DELETE", "url": "Patient/does-not-exist-" + p}}
    )
    bundle["entry"][0]["request"]["url"] = f"Patient/{p}-9"  # type: ignore[index]
    bundle["entry"][0]["resource"]["id"] = f"{p}-9"  # type: ignore[index]
    assert (await fhir.post("", json=bundle)).status_code == 404
    assert await outbox_of(events_services, "Patient", f"{p}-9") == []


async def test_sequencing_waits_for_an_older_open_transaction_and_skips_nothing(
    events_services: Services, events_database: str
) -> None:
    """A transaction that began writing earlier but commits later is numbered first, and the
    ones that committed meanwhile wait for it: a cursor past them never misses it."""
    store = events_services.store
    await sequence_all(events_services)
    slow = await asyncpg.connect(events_database)
    p = uuid.uuid4().hex[:10]
    try:
        tx = slow.transaction()
        await tx.start()
        from flode.store.repository import Transaction

        now = datetime.now(UTC)
        writer = Transaction(slow, store.indexer)
        resource = {"resourceType": "Patient", "id": f"{p}-slow"}
        await writer.insert("Patient", f"{p}-slow", now, "PUT", "{}", resource)
        async with store.transaction() as fast:
            resource = {"resourceType": "Patient", "id": f"{p}-fast"}
            await fast.insert("Patient", f"{p}-fast", now, "PUT", "{}", resource)
        await sequence_all(events_services)
        assert (await outbox_of(events_services, "Patient", f"{p}-fast"))[0]["event"] is None
        await tx.commit()
    finally:
        await slow.close()
    await sequence_all(events_services)
    slow_event = (await outbox_of(events_services, "Patient", f"{p}-slow"))[0]["event"]
    fast_event = (await outbox_of(events_services, "Patient", f"{p}-fast"))[0]["event"]
    assert slow_event + 1 == fast_event
    numbers = [r["event"] for r in await store.pool.fetch("SELECT event FROM outbox")]
    assert None not in numbers
    assert sorted(numbers) == list(range(1, len(numbers) + 1))


async def test_a_resources_versions_are_numbered_in_order_even_when_their_xids_are_not(
    fhir: httpx.AsyncClient, events_services: Services, events_database: str
) -> None:
    """B takes an xid, then C (left open), then A writes version 2 and commits; B writes
    version 3 after it. B's xid is below the horizon while A's is not: version 3 waits."""
    p = uuid.uuid4().hex[:10]
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
    await sequence_all(events_services)
    store = events_services.store
    b, c = await asyncpg.connect(events_database), await asyncpg.connect(events_database)
    try:
        b_tx, c_tx = b.transaction(), c.transaction()
        await b_tx.start()
        await b.fetchval("SELECT pg_current_xact_id()")
        await c_tx.start()
        await c.fetchval("SELECT pg_current_xact_id()")
        body = {"resourceType": "Patient", "id": p, "active": True}
        assert (await fhir.put(f"Patient/{p}", json=body)).status_code == 200  # A: version 2
        from flode.store.repository import Transaction

        writer = Transaction(b, store.indexer)
        current = await writer.current("Patient", p)
        assert current is not None
        assert current.version == 2
        await writer.update(current, datetime.now(UTC), "PUT", "{}", body)  # version 3
        await b_tx.commit()
        await sequence_all(events_services)
        events = await outbox_of(events_services, "Patient", p)
        assert [e["event"] is None for e in events] == [False, True, True]
        await c_tx.commit()
    finally:
        await b.close()
        await c.close()
    await sequence_all(events_services)
    events = await outbox_of(events_services, "Patient", p)
    assert events[0]["event"] < events[1]["event"] < events[2]["event"]


async def test_a_loader_appends_outbox_rows_with_copy(events_services: Services) -> None:
    p = uuid.uuid4().hex[:10]
    now = datetime.now(UTC)
    records = outbox_rows(
        [(10**12 + n, "Observation", f"{p}-{n}", 1, False, now, [f"{p}", p]) for n in range(3)]
    )
    async with events_services.store.pool.acquire() as conn, conn.transaction():
        await conn.copy_records_to_table(TABLE, records=records, columns=list(COLUMNS))
    await sequence_all(events_services)
    for n in range(3):
        [event] = await outbox_of(events_services, "Observation", f"{p}-{n}")
        assert event["action"] == "create"
        assert event["patients"] == [p]
        assert event["event"] is not None


def test_a_batch_puts_each_resources_versions_in_order_in_the_slots_it_has() -> None:
    # (id, resource_pk, version) in (xid, id) order: resource 7's version 3 came first.
    rows = [(30, 7, 3), (31, 8, 1), (20, 7, 2), (32, 8, 2), (21, 9, 1)]
    assert sequencer.order(rows) == [20, 31, 30, 32, 21]
