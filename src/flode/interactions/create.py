"""create and conditional create (https://hl7.org/fhir/R4/http.html#create).

`prepare_create` checks the request without I/O; `find_existing` and `create_in` do the work
inside a given transaction, so a transaction Bundle runs the same steps as `POST /{type}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flode.access import ownership, policy
from flode.context import RequestContext
from flode.events import writes
from flode.interactions.guard import guarded
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import (
    check_body,
    check_type,
    conditional_criteria,
    find_one,
    information,
    new_id,
    next_timestamp,
    stamp,
)
from flode.store.records import Current, Version
from flode.store.repository import Transaction


def prepare_create(services: Services, resource_type: str, body: Any) -> dict[str, Any]:
    """The resource to create, validated. The server assigns the id; one in the body is ignored,
    so it is not validated either."""
    check_type(services, resource_type)
    if isinstance(body, dict):
        body = {key: value for key, value in body.items() if key != "id"}
    return check_body(services, resource_type, body)


async def find_existing(
    tx: Transaction,
    services: Services,
    resource_type: str,
    if_none_exist: Sequence[tuple[str, str]],
) -> Current | None:
    """The resource that makes a conditional create a no-op, if one matches (412 if several)."""
    return await find_one(
        tx,
        services,
        resource_type,
        if_none_exist,
        "If-None-Exist matches more than one resource: the criteria are not selective",
    )


def existing_outcome(existing: Current) -> Outcome:
    return Outcome(
        200,
        existing.as_version(),
        issues=information("A resource matching If-None-Exist exists; nothing created"),
    )


async def insert_new(
    tx: Transaction, resource_type: str, resource: dict[str, Any], id: str | None = None
) -> Version:
    """Write a resource under a new server-assigned id (`id`, if the caller chose it already)."""
    id = id or new_id()
    last_updated = next_timestamp(None)
    ownership.decide(resource, tx.writer, None)
    content = stamp(resource, id, 1, last_updated)
    await tx.insert(resource_type, id, last_updated, "POST", content, resource)
    return Version(resource_type, id, 1, last_updated, "POST", content)


async def create_in(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    resource: dict[str, Any],
    id: str | None = None,
) -> Outcome:
    """Create `resource` inside `tx` for `ctx`; a Subscription is checked and served
    (flode.events.writes)."""
    checked = writes.check(services, ctx, resource_type, resource, None)
    outcome = Outcome(201, await insert_new(tx, resource_type, resource, id))
    return await writes.adopt(tx, services, ctx, checked, outcome)


async def create(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    body: Any,
    if_none_exist: Sequence[tuple[str, str]] | None = None,
) -> Outcome:
    policy.require(ctx, resource_type, "c")  # before the body is looked at
    resource = prepare_create(services, resource_type, body)
    if if_none_exist:
        conditional_criteria(services, resource_type, if_none_exist)  # a 400 before any I/O

    async def work(tx: Transaction) -> Outcome:
        if if_none_exist:
            existing = await find_existing(tx, services, resource_type, if_none_exist)
            if existing is not None:
                return existing_outcome(existing)
        return await create_in(tx, services, ctx, resource_type, resource)

    return await guarded(services, ctx, resource_type, "c", None, work)
