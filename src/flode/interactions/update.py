"""update, update as create, and conditional update (https://hl7.org/fhir/R4/http.html#update).

The `prepare_*` functions check a request without I/O; the rest work inside a given
transaction, so a transaction Bundle runs the same steps as `PUT /{type}/{id}`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flode.access import ownership, policy
from flode.access.ownership import Owner
from flode.context import RequestContext
from flode.events import writes
from flode.fhir.errors import bad_request, precondition_failed
from flode.interactions.guard import guarded
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import (
    check_body,
    check_type,
    conditional_criteria,
    find_one,
    new_id,
    next_timestamp,
    stamp,
)
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
        ownership.decide(resource, tx.writer, None)
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
    ownership.decide(resource, tx.writer, Owner(current.owner_unit, current.owner_provider))
    content = stamp(resource, id, current.version + 1, last_updated)
    version = await tx.update(current, last_updated, method, content, resource)
    status = 201 if current.deleted else 200
    return Outcome(status, Version(resource_type, id, version, last_updated, method, content))


def prepare_update(services: Services, resource_type: str, id: str, body: Any) -> dict[str, Any]:
    """The resource to write as `resource_type/id`, validated; its id must be the URL's."""
    check_type(services, resource_type)
    check_id(id)
    resource = check_body(services, resource_type, body)
    if resource.get("id") != id:
        raise bad_request(
            f"The resource's id '{resource.get('id')}' must equal the id '{id}' in the URL", "id"
        )
    return resource


async def update(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    body: Any,
    if_match: int | None = None,
) -> Outcome:
    policy.require(ctx, resource_type, "u")  # before the body is looked at
    resource = prepare_update(services, resource_type, id, body)

    async def work(tx: Transaction) -> Outcome:
        target = Target(id, await tx.current(resource_type, id), "PUT")
        return await replace_in(tx, services, ctx, resource_type, target, resource, if_match)

    return await guarded(services, ctx, resource_type, "u", id, work)


def prepare_conditional_update(
    services: Services, resource_type: str, criteria: Sequence[tuple[str, str]], body: Any
) -> dict[str, Any]:
    """The resource of a conditional update, validated; the criteria are checked too."""
    check_type(services, resource_type)
    resource = check_body(services, resource_type, body)
    conditional_criteria(services, resource_type, criteria)
    return resource


@dataclass(frozen=True, slots=True)
class Target:
    """What a conditional update writes: the resource's id, its current version (None if it is
    new) and the method history records."""

    id: str
    current: Current | None
    method: str


async def replace_in(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    target: Target,
    resource: dict[str, Any],
    if_match: int | None,
) -> Outcome:
    """Write `resource` as the next version of `target` inside `tx`, for `ctx`; a Subscription
    or a SubscriptionTopic is checked and served (flode.events.writes). Every write path takes
    it, `flode load --fast` and `$import` too (flode.load.fast)."""
    checked = writes.check(services, ctx, resource_type, resource, target.current)
    outcome = await write_version(
        tx, target.current, resource_type, target.id, resource, target.method, if_match
    )
    return await writes.adopt(tx, services, ctx, checked, outcome)


async def conditional_target(
    tx: Transaction,
    services: Services,
    resource_type: str,
    criteria: Sequence[tuple[str, str]],
    resource: dict[str, Any],
    if_match: int | None,
) -> Target:
    """Which resource a conditional update writes: the one match, else the body's id, else a
    new one (http.html#cond-update)."""
    body_id = resource.get("id")
    current = await find_one(
        tx,
        services,
        resource_type,
        criteria,
        "The conditional update criteria match more than one resource",
    )
    if current is not None:
        if body_id is not None and body_id != current.id:
            raise bad_request(
                f"The resource's id '{body_id}' differs from the matching resource "
                f"{resource_type}/{current.id}",
                "id",
            )
        return Target(current.id, current, "PUT")
    if body_id is None:
        if if_match is not None:
            raise precondition_failed("If-Match given, but no resource matches the criteria")
        return Target(new_id(), None, "POST")
    check_id(body_id)
    return Target(body_id, await tx.current(resource_type, body_id), "PUT")


async def conditional_update(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    criteria: Sequence[tuple[str, str]],
    body: Any,
    if_match: int | None = None,
) -> Outcome:
    policy.require(ctx, resource_type, "u")  # before the body is looked at
    resource = prepare_conditional_update(services, resource_type, criteria, body)

    async def work(tx: Transaction) -> Outcome:
        target = await conditional_target(tx, services, resource_type, criteria, resource, if_match)
        return await replace_in(tx, services, ctx, resource_type, target, resource, if_match)

    return await guarded(services, ctx, resource_type, "u", None, work)
