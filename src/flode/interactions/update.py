"""update, update as create, and conditional update (https://hl7.org/fhir/R4/http.html#update)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from flode.context import RequestContext
from flode.fhir.errors import bad_request, precondition_failed
from flode.interactions.create import insert_new
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import (
    check_body,
    check_type,
    conditional_criteria,
    next_timestamp,
    stamp,
)
from flode.store.criteria import criteria_keys
from flode.store.records import Current, Version
from flode.store.repository import Transaction

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(id: str) -> None:
    if not ID.match(id):
        raise bad_request(f"'{id}' is not a valid resource id ([A-Za-z0-9-.]{{1,64}})")


async def write_version(
    tx: Transaction,
    current: Current | None,
    resource_type: str,
    id: str,
    resource: dict[str, Any],
    method: str,
    if_match: int | None,
) -> Outcome:
    """Write `resource` as the next version of `resource_type/id` (the first if it is new)."""
    if current is None:
        if if_match is not None:
            raise precondition_failed(f"If-Match given, but {resource_type}/{id} does not exist")
        last_updated = next_timestamp(None)
        content = stamp(resource, id, 1, last_updated)
        if await tx.insert(resource_type, id, last_updated, method, content, resource):
            return Outcome(201, Version(resource_type, id, 1, last_updated, method, content))
        # A concurrent request created it first: update what it wrote.
        current = await tx.current(resource_type, id)
        assert current is not None
    if if_match is not None and if_match != current.version:
        raise precondition_failed(
            f'If-Match W/"{if_match}" does not match the current version '
            f'W/"{current.version}" of {resource_type}/{id}'
        )
    last_updated = next_timestamp(current)
    content = stamp(resource, id, current.version + 1, last_updated)
    version = await tx.update(current, last_updated, method, content, resource)
    status = 201 if current.deleted else 200
    return Outcome(status, Version(resource_type, id, version, last_updated, method, content))


async def update(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    body: Any,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    check_id(id)
    resource = check_body(services, resource_type, body)
    if resource.get("id") != id:
        raise bad_request(
            f"The resource's id '{resource.get('id')}' must equal the id '{id}' in the URL", "id"
        )
    async with services.store.transaction() as tx:
        current = await tx.current(resource_type, id)
        return await write_version(tx, current, resource_type, id, resource, "PUT", if_match)


async def conditional_update(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    criteria: Sequence[tuple[str, str]],
    body: Any,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    resource = check_body(services, resource_type, body)
    where, args = conditional_criteria(services, resource_type, criteria)
    body_id = resource.get("id")
    async with services.store.transaction() as tx:
        for key in criteria_keys(resource_type, criteria):
            await tx.lock_key(key)
        found = await tx.find(resource_type, where, args, limit=2)
        if len(found) > 1:
            raise precondition_failed(
                "The conditional update criteria match more than one resource"
            )
        if found:
            current = found[0]
            if body_id is not None and body_id != current.id:
                raise bad_request(
                    f"The resource's id '{body_id}' differs from the matching resource "
                    f"{resource_type}/{current.id}",
                    "id",
                )
            return await write_version(
                tx, current, resource_type, current.id, resource, "PUT", if_match
            )
        if body_id is None:
            if if_match is not None:
                raise precondition_failed("If-Match given, but no resource matches the criteria")
            return Outcome(201, await insert_new(tx, resource_type, resource))
        check_id(body_id)
        existing = await tx.current(resource_type, body_id)
        return await write_version(tx, existing, resource_type, body_id, resource, "PUT", if_match)
