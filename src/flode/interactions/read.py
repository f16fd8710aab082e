"""read and vread (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from flode.access.protected import Masking
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.errors import FhirError, Issue, bad_request, not_found
from flode.fhir.subsetting import elements, summary
from flode.interactions import logged
from flode.interactions.guard import check_read
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import check_type
from flode.store.records import Version


def gone(version: Version) -> FhirError:
    return FhirError(
        410,
        [Issue("error", "deleted", f"{version.resource_type}/{version.id} has been deleted")],
        {"ETag": f'W/"{version.version}"'},
    )


async def read(services: Services, ctx: RequestContext, resource_type: str, id: str) -> Outcome:
    check_type(services, resource_type)
    await check_read(services, ctx, resource_type, id)
    version = await services.store.read(resource_type, id)
    if version is None:
        raise not_found(f"{resource_type}/{id} is not known")
    if version.deleted:
        raise gone(version)
    await logged.read(services, ctx, version, "read")
    return Outcome(200, masked(services, ctx, version))


async def vread(
    services: Services, ctx: RequestContext, resource_type: str, id: str, version_id: str
) -> Outcome:
    check_type(services, resource_type)
    await check_read(services, ctx, resource_type, id)
    if not version_id.isdigit() or len(version_id) > 9:
        raise not_found(f"{resource_type}/{id} has no version '{version_id}'")
    version = await services.store.vread(resource_type, id, int(version_id))
    if version is None:
        if await services.store.pk_of(resource_type, id) is not None:
            raise not_found(f"{resource_type}/{id} has no version {version_id}")
        raise not_found(f"{resource_type}/{id} is not known")
    if version.deleted:
        raise gone(version)
    await logged.read(services, ctx, version, "vread")
    return Outcome(200, masked(services, ctx, version))


def masked(services: Services, ctx: RequestContext, version: Version) -> Version:
    """The version as the request may see it: a patient with protected identity masked
    (flode.access.protected) before `_summary` or `_elements` subset it."""
    return Masking.of(ctx, services.protected_identity_units).version(version)


def subsetted(services: Services, outcome: Outcome, params: Sequence[tuple[str, str]]) -> Outcome:
    """A read's resource as `_summary` or `_elements` ask (search.html#summary: they apply to
    read too); the outcome itself when neither is given."""
    values = dict(params)
    mode, names = values.get("_summary"), values.get("_elements")
    if ((mode is None or mode == "false") and names is None) or outcome.version is None:
        return outcome
    if mode is not None and mode not in ("true", "text", "data", "false"):
        raise bad_request("_summary on a read must be true, text, data or false", "_summary")
    resource = json.loads(outcome.version.content or "null")
    if mode is not None and mode != "false":
        resource = summary(services.definitions, resource, mode)
    elif names is not None:
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        resource = elements(services.definitions, resource, wanted)
    return replace(outcome, body=resource)
