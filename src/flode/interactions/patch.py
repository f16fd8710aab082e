"""patch with JSON Patch (https://hl7.org/fhir/R4/http.html#patch).

`patch_in` works inside a given transaction, so a transaction Bundle runs the same steps as
`PATCH /{type}/{id}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import bad_request, not_found
from flode.fhir.jsonpatch import apply_patch
from flode.interactions.guard import guarded
from flode.interactions.outcome import Outcome
from flode.interactions.read import gone
from flode.interactions.services import Services
from flode.interactions.update import Target, replace_in
from flode.interactions.write import check_body, check_type
from flode.store.repository import Transaction


def _unchanged(resource: dict[str, Any]) -> dict[str, Any]:
    return resource


async def patch_in(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    operations: Any,
    if_match: int | None = None,
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] = _unchanged,
) -> Outcome:
    """Apply the operations to the current version and write the result, validated, for
    `ctx`. `rewrite` turns the patched resource into the one to write (a transaction Bundle
    rewrites the references to its entries)."""
    current = await tx.current(resource_type, id)
    if current is None:
        raise not_found(f"{resource_type}/{id} is not known")
    if current.deleted or current.content is None:
        raise gone(current.as_version())
    patched = rewrite(apply_patch(json.loads(current.content), operations))
    resource = check_body(services, resource_type, patched)
    if resource.get("id") != id:
        raise bad_request("A patch must not change the resource's id", "id")
    target = Target(id, current, "PATCH")
    return await replace_in(tx, services, ctx, resource_type, target, resource, if_match)


async def patch(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    operations: Any,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    return await guarded(
        services,
        ctx,
        resource_type,
        "u",
        id,
        lambda tx: patch_in(tx, services, ctx, resource_type, id, operations, if_match),
    )
