"""Where a load meets the records every write must leave: the access log (DOMAIN.md L4: every
read, write, print, copy or disclosure, with its action, time, user and patient) and the event
outbox (DESIGN.md principle 2: every change is announced, from its own transaction).

A load through the transaction machinery leaves them as any API write does. The fast path
(flode.load.fast) writes versions and index rows itself, so these two functions are the only
places where it does: whatever the access log and the events need from a load goes here, never
around them.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from flode.context import RequestContext
from flode.events import outbox
from flode.store.repository import Transaction

log = structlog.get_logger("flode.load")

Created = tuple[int, str, str, int, bool, datetime, Sequence[str]]
"""A version written without `Transaction`: (pk, type, id, version, deleted, last_updated,
the ids of the Patients whose compartments it is in)."""


@dataclass(frozen=True, slots=True)
class LoadRecord:
    """One file loaded: who loaded what, when, about which patients."""

    path: str
    sha256: str
    method: str
    """`transaction` or `fast`."""
    started: datetime
    finished: datetime
    resources: Mapping[str, int]
    """Resources written, by type."""
    patients: Sequence[str]
    """The ids of the Patients whose compartments the written resources belong to."""


def record_load(ctx: RequestContext, record: LoadRecord) -> None:
    """Record a load in the access log (DOMAIN.md L4), once its data is committed.

    The access log does not exist yet; until it does, each file gets one structured log line
    with everything an access-log entry needs."""
    log.info(
        "load recorded",
        action="write",
        actor=ctx.request_id,
        os_user=_os_user(),
        path=record.path,
        sha256=record.sha256,
        method=record.method,
        started=record.started.isoformat(),
        finished=record.finished.isoformat(),
        resources=sum(record.resources.values()),
        types=dict(record.resources),
        patients=list(record.patients),
    )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"


async def announce(tx: Transaction, created: Sequence[Created]) -> None:
    """Announce the versions the fast path creates, in the transaction that writes them: one
    outbox row each (flode.events.outbox), as `Transaction.insert` appends for a single write."""
    if created:
        await tx.conn.copy_records_to_table(
            outbox.TABLE, records=outbox.outbox_rows(created), columns=outbox.COLUMNS
        )
