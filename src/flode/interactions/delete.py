"""delete and conditional delete (https://hl7.org/fhir/R4/http.html#delete).

A delete writes a new version that is a tombstone; earlier versions stay readable by vread and
history (nothing clinical is ever erased: DOMAIN.md L12).
"""

from __future__ import annotations

from collections.abc import Sequence

from flode.context import RequestContext
from flode.fhir.errors import not_found, precondition_failed
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import check_type, conditional_criteria, information, next_timestamp
from flode.store.criteria import criteria_keys
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
    last_updated = next_timestamp(current)
    version = await tx.update(current, last_updated, "DELETE", None, None)
    return Outcome(
        204,
        Version(current.resource_type, current.id, version, last_updated, "DELETE", None),
        issues=information(f"Deleted {name}; version {version} records the deletion"),
    )


async def delete(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    async with services.store.transaction() as tx:
        current = await tx.current(resource_type, id)
        if current is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if if_match is not None and if_match != current.version:
            raise precondition_failed(
                f'If-Match W/"{if_match}" does not match the current version '
                f'W/"{current.version}" of {resource_type}/{id}'
            )
        return await _tombstone(tx, current)


async def conditional_delete(
    services: Services, ctx: RequestContext, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> Outcome:
    check_type(services, resource_type)
    where, args = conditional_criteria(services, resource_type, criteria)
    async with services.store.transaction() as tx:
        for key in criteria_keys(resource_type, criteria):
            await tx.lock_key(key)
        found = await tx.find(resource_type, where, args, limit=2)
        if len(found) > 1:
            raise precondition_failed(
                "The conditional delete criteria match more than one resource"
            )
        if not found:
            return Outcome(204, issues=information("No resource matched; nothing was deleted"))
        return await _tombstone(tx, found[0])
