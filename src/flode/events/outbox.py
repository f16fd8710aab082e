"""The outbox: one row per committed change, written by the change's own transaction
(DESIGN.md principle 2), so that an event exists exactly when its change does.

`Transaction.insert` and `Transaction.update` (flode.store.repository) call `append`; the bulk
loader, which writes with COPY, appends its rows with `outbox_rows` and `COLUMNS`. Sequencing
and delivery read the table afterwards (flode.events.sequencer, flode.events.dispatcher).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

TABLE = "outbox"
COLUMNS = (
    "resource_pk",
    "resource_type",
    "resource_id",
    "version",
    "action",
    "patients",
    "occurred",
)
"""The columns `outbox_rows` fills, for `copy_records_to_table(TABLE, records=…, columns=…)`;
the writing transaction's id is filled in by the table's default."""

# The patients are read back from the index rows the write has just replaced (or, for a
# deletion, is about to remove): the indexer already worked them out, once.
_APPEND = """
    INSERT INTO outbox (resource_pk, resource_type, resource_id, version, action, patients,
                        occurred)
    SELECT $1, $2, $3, $4, $5, ARRAY(
        SELECT c.compartment_id FROM resource_compartment c
        WHERE c.resource_pk = $1 AND c.compartment_type = 'Patient' ORDER BY 1), $6"""

Conn = asyncpg.Connection | PoolConnectionProxy


async def append(
    conn: Conn,
    pk: int,
    resource_type: str,
    id: str,
    version: int,
    action: str,
    occurred: datetime,
) -> None:
    """Record a change inside its transaction. Call it after the index rows of a created or
    updated version are written, and before those of a deleted resource are removed."""
    await conn.execute(_APPEND, pk, resource_type, id, version, action, occurred)


def action_of(previous_exists: bool, deleted: bool) -> str:
    """`create` for a first version or one that follows a deletion, `delete` for a tombstone,
    `update` otherwise (the interactions a SubscriptionTopic trigger names)."""
    if deleted:
        return "delete"
    return "update" if previous_exists else "create"


def outbox_rows(
    written: Iterable[tuple[int, str, str, int, bool, datetime, Sequence[str]]],
) -> list[tuple[Any, ...]]:
    """Outbox records for versions written without `Transaction` (a COPY load), in `COLUMNS`
    order. Each written version is (pk, type, id, version, deleted, last_updated, patients): the
    patients are the Patient compartment ids the indexer gave the version (for a deletion,
    those of the version before)."""
    return [
        (
            pk,
            resource_type,
            id,
            version,
            action_of(version > 1, deleted),
            sorted(set(patients)),
            last_updated,
        )
        for pk, resource_type, id, version, deleted, last_updated, patients in written
    ]


@dataclass(frozen=True, slots=True)
class Event:
    """One sequenced change."""

    event: int
    resource_pk: int
    resource_type: str
    resource_id: str
    version: int
    action: str
    patients: tuple[str, ...]
    occurred: datetime

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


EVENT_COLUMNS = (
    "event, resource_pk, resource_type, resource_id, version, action, patients, occurred"
)


def event_of(row: asyncpg.Record) -> Event:
    return Event(
        row["event"],
        row["resource_pk"],
        row["resource_type"],
        row["resource_id"],
        row["version"],
        row["action"],
        tuple(row["patients"]),
        row["occurred"],
    )


async def events_after(conn: Conn, after: int, limit: int) -> list[Event]:
    """Sequenced events with numbers above `after`, in order."""
    rows = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM outbox WHERE event > $1 ORDER BY event LIMIT $2",
        after,
        limit,
    )
    return [event_of(row) for row in rows]
