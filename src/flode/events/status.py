"""The status the server gives a Subscription (R4 Subscriptions Backport IG, "Errors"): written
into the resource, as a new version, and into its row, in one transaction, so a read of the
Subscription and `$status` say the same."""

from __future__ import annotations

from typing import Any

from flode.fhir import json
from flode.interactions.write import next_timestamp, stamp
from flode.store.repository import Transaction


async def write_status(
    tx: Transaction, id: str, expected: int, status: str, error: str | None
) -> bool:
    """Set the Subscription's `status` (and `error`, or none) in `tx`; nothing, and False, if
    its current version is no longer `expected` (a client changed it since)."""
    current = await tx.current("Subscription", id)
    if current is None or current.deleted or current.version != expected:
        return False
    assert current.content is not None
    resource: dict[str, Any] = json.loads(current.content)
    resource["status"] = status
    resource.pop("error", None)
    if error is not None:
        resource["error"] = error[:1000]
    last_updated = next_timestamp(current)
    content = stamp(resource, id, current.version + 1, last_updated)
    version = await tx.update(current, last_updated, "PUT", content, resource)
    await tx.conn.execute(
        """UPDATE subscription SET version = $2, status = $3, error = $4
           WHERE id = $1 AND version = $5""",
        id,
        version,
        status,
        error,
        expected,
    )
    return True
