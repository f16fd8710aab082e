"""patch with JSON Patch (https://hl7.org/fhir/R4/http.html#patch)."""

from __future__ import annotations

from typing import Any

from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import bad_request, not_found
from flode.fhir.jsonpatch import apply_patch
from flode.interactions.outcome import Outcome
from flode.interactions.read import gone
from flode.interactions.services import Services
from flode.interactions.update import write_version
from flode.interactions.write import check_body, check_type


async def patch(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    operations: Any,
    if_match: int | None = None,
) -> Outcome:
    check_type(services, resource_type)
    async with services.store.transaction() as tx:
        current = await tx.current(resource_type, id)
        if current is None:
            raise not_found(f"{resource_type}/{id} is not known")
        if current.deleted or current.content is None:
            raise gone(current.as_version())
        patched = apply_patch(json.loads(current.content), operations)
        resource = check_body(services, resource_type, patched)
        if resource.get("id") != id:
            raise bad_request("A patch must not change the resource's id", "id")
        return await write_version(tx, current, resource_type, id, resource, "PATCH", if_match)
