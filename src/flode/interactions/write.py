"""What every write shares: checking the body, stamping meta, validating, versioning, finding
the match of a conditional write, and running the work in a database transaction."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flode.audit import AUDIT_EVENT, append_only
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.dates import format_instant
from flode.fhir.errors import (
    Issue,
    bad_request,
    conflict,
    invalid_resource,
    not_found,
    precondition_failed,
)
from flode.fhir.search_query import parse
from flode.interactions.services import Services
from flode.store.criteria import criteria_keys
from flode.store.records import Current
from flode.store.repository import Collided, Transaction
from flode.store.sql import Args

T = TypeVar("T")

# How often work that lost a deadlock or a serialization conflict is run again from the start.


def check_type(services: Services, resource_type: str) -> None:
    if resource_type == AUDIT_EVENT:  # served from the access log alone (docs/audit.md)
        raise append_only()
    if resource_type not in services.definitions.resource_types:
        raise not_found(f"Resource type '{resource_type}' is not known to this FHIR R4 server")


def check_body(services: Services, resource_type: str, body: Any) -> dict[str, Any]:
    """The body must be a resource of the type in the URL, valid against the base R4 spec."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object holding a FHIR resource")
    found = body.get("resourceType")
    if found != resource_type:
        raise bad_request(
            f"The resource's resourceType '{found}' does not match the URL's '{resource_type}'",
            "resourceType",
        )
    issues = services.validator.validate(body)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if resource_type == "SearchParameter" and not errors:
        errors = services.parameters.check(body)  # one it cannot index would be a silent no-op
    if errors:
        raise invalid_resource(errors)
    return body


def new_id() -> str:
    return str(uuid.uuid4())


def next_timestamp(current: Current | None) -> datetime:
    """Now, but always after the current version (clocks of several nodes may disagree)."""
    now = datetime.now(UTC)
    if current is not None and now <= current.last_updated:
        now = current.last_updated + timedelta(microseconds=1)
    return now


def stamp(resource: dict[str, Any], id: str, version: int, last_updated: datetime) -> str:
    """Set id, meta.versionId and meta.lastUpdated (in place) and return the JSON to store."""
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["versionId"] = str(version)
    meta["lastUpdated"] = format_instant(last_updated)
    ordered: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id, "meta": meta}
    for key, value in resource.items():
        if key not in ordered:
            ordered[key] = value
    resource.clear()
    resource.update(ordered)
    return json.dumps(resource).decode()


def information(diagnostics: str) -> list[Issue]:
    return [Issue("information", "informational", diagnostics)]


def conditional_criteria(
    services: Services, resource_type: str, criteria: Sequence[tuple[str, str]]
) -> tuple[str, Args]:
    """The SQL for the search criteria of a conditional create, update or delete. Any search
    is allowed; an unknown parameter is refused, never ignored: ignoring it would match too
    much and write or delete the wrong resource."""
    query = parse(criteria)
    if not query.criteria:
        raise bad_request("Search criteria are required for a conditional interaction")
    compiled = services.search.compile(resource_type, query)
    if compiled.unknown:
        raise bad_request(
            f"Unknown search parameter(s) in the condition: {', '.join(compiled.unknown)}",
            *compiled.unknown,
        )
    return compiled.where, compiled.args


async def find_one(
    tx: Transaction,
    services: Services,
    resource_type: str,
    criteria: Sequence[tuple[str, str]],
    too_many: str,
) -> Current | None:
    """The one current resource matching the criteria of a conditional write, locked; None if
    nothing matches; 412 (`too_many`) if several do. The criteria's lock keys are taken first,
    so concurrent conditional writes that could match the same resource run one after another."""
    where, args = conditional_criteria(services, resource_type, criteria)
    for key in criteria_keys(resource_type, criteria):
        await tx.lock_key(key)
    found = await tx.find(resource_type, where, args, limit=2)
    if len(found) > 1:
        raise precondition_failed(too_many)
    return found[0] if found else None


async def in_transaction(
    services: Services,
    work: Callable[[Transaction], Awaitable[T]],
    writer: RequestContext | None = None,
) -> T:
    """Run `work` in one database transaction and return its result once committed; 409 if
    it kept colliding with concurrent transactions (see `Store.retrying`). The `writer`'s
    unit owns what it creates, and its writes of patient data get a Provenance (L11)."""

    async def as_writer(tx: Transaction) -> T:
        tx.writer = writer
        return await work(tx)

    try:
        return await services.store.retrying(as_writer)
    except Collided as exc:
        raise conflict(
            f"The write conflicted with concurrent writes {exc.attempts} times and was not "
            "applied; try again"
        ) from None
