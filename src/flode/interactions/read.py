"""read and vread (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue, not_found
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
    version = await services.store.read(resource_type, id)
    if version is None:
        raise not_found(f"{resource_type}/{id} is not known")
    if version.deleted:
        raise gone(version)
    return Outcome(200, version)


async def vread(
    services: Services, ctx: RequestContext, resource_type: str, id: str, version_id: str
) -> Outcome:
    check_type(services, resource_type)
    if not version_id.isdigit() or len(version_id) > 9:
        raise not_found(f"{resource_type}/{id} has no version '{version_id}'")
    version = await services.store.vread(resource_type, id, int(version_id))
    if version is None:
        if await services.store.pk_of(resource_type, id) is not None:
            raise not_found(f"{resource_type}/{id} has no version {version_id}")
        raise not_found(f"{resource_type}/{id} is not known")
    if version.deleted:
        raise gone(version)
    return Outcome(200, version)
