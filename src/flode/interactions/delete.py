"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete).

A delete writes a new version that is a tombstone; earlier versions stay readable by vread and
history (nothing clinical is ever erased: DOMAIN.md L12). `delete_in` and `conditional_delete_in`
work inside a given transaction, so a transaction Bundle runs the same steps as `DELETE`.
"""

from __future__ import annotations

from collections.abc import Sequence

from flode.context import RequestContext
from flode.events import writes
from flode.fhir.errors import not_found, precondition_failed
from flode.interactions.guard import guarded
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import (
    check_type,
    conditional_criteria,
    find_one,
    information,
    next_timestamp,
)
from flode.store.records import Current, Version
from flode.store.repository import Transaction


async def _tombstone(tx: Transaction, current: Current) -> Outcome:
    name = f"{current.resource_type}/{current.id}"
    if current.deleted:
        return Outcome(
            204,
            current.as_version(),
            issues=information(f"{name} was already deleted"),
        )
    effects = await writes.deleting(tx, current)  # a SubscriptionTopic's (flode.events)
    last_updated = next_timestamp(current)
    version = await tx.update(current, last_updated, "DELETE", None, None)
    return Outcome(
        204,
        Version(current.resource_type, current.id, version, last_updated, "DELETE", None),
        issues=information(f"Deleted {name}; version {version} records the deletion") + effects,
    )


async def delete_in(
    tx: Transaction, resource_type: str, id: str, if_match: int | None = None
) -> Outcome:
    current = await tx.current(resource_type, id)
    if current is None:
        raise not_found(f"{resource_type}/{id} is not known")
    if if_match is not None and if_match != current.version:
        raise precondition_failed(
            f'If-Match W/"{if_match}" does not match the current version '
            f'W/"{current.version}" of {resource_type}/{id}'
        )
    return await _tombstone(tx, current)


async def delete(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    return await guarded(
        services, ctx, resource_type, "d", id, lambda tx: delete_in(tx, resource_type, id, if_match)
    )


async def conditional_delete_in(
    tx: Transaction, services: Services, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> Outcome:
    found = await find_one(
        tx,
        services,
        resource_type,
        criteria,
        "The conditional delete criteria match more than one resource",
    )
    if found is None:
        return Outcome(204, issues=information("No resource matched; nothing was deleted"))
    return await _tombstone(tx, found)


async def conditional_delete(
    services: Services, ctx: RequestContext, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> Outcome:
    check_type(services, resource_type)
    conditional_criteria(services, resource_type, criteria)  # a 400 before any I/O
    return await guarded(
        services,
        ctx,
        resource_type,
        "d",
        None,
        lambda tx: conditional_delete_in(tx, services, resource_type, criteria),
    )
