"""create and conditional create (https://hl7.org/fhir/R4/http.html#create)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flode.context import RequestContext
from flode.fhir.errors import precondition_failed
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import (
    check_body,
    check_type,
    conditional_criteria,
    information,
    new_id,
    next_timestamp,
    stamp,
)
from flode.store.criteria import criteria_keys
from flode.store.records import Version
from flode.store.repository import Transaction


async def insert_new(tx: Transaction, resource_type: str, resource: dict[str, Any]) -> Version:
    """Write a resource under a new server-assigned id (any id in the body is ignored)."""
    id = new_id()
    last_updated = next_timestamp(None)
    content = stamp(resource, id, 1, last_updated)
    await tx.insert(resource_type, id, last_updated, "POST", content, resource)
    return Version(resource_type, id, 1, last_updated, "POST", content)


async def create(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    body: Any,
    if_none_exist: Sequence[tuple[str, str]] | None = None,
) -> Outcome:
    check_type(services, resource_type)
    if isinstance(body, dict):
        # The server assigns the id; one in the body is ignored, so it is not validated either.
        body = {key: value for key, value in body.items() if key != "id"}
    resource = check_body(services, resource_type, body)
    async with services.store.transaction() as tx:
        if if_none_exist:
            where, args = conditional_criteria(services, resource_type, if_none_exist)
            for key in criteria_keys(resource_type, if_none_exist):
                await tx.lock_key(key)
            found = await tx.find(resource_type, where, args, limit=2)
            if len(found) > 1:
                raise precondition_failed(
                    "If-None-Exist matches more than one resource: the criteria are not selective"
                )
            if found:
                return Outcome(
                    200,
                    found[0].as_version(),
                    issues=information("A resource matching If-None-Exist exists; nothing created"),
                )
        version = await insert_new(tx, resource_type, resource)
    return Outcome(201, version)
