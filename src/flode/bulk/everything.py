"""`Patient/{id}/$everything` (https://hl7.org/fhir/R4/patient-operation-everything.html):
the patient, every resource in its compartment (per the Patient CompartmentDefinition), and the
Practitioners, Organizations, Locations and Medications those resources refer to, as a
searchset Bundle in pages.

`start` and `end` limit the compartment to care within those dates (each type's date of care,
see `compartment.care_dates`; resources without one are always included), `_since` to
resources changed after an instant, `_type` to some types. The first page stores the keys of
the whole answer as a result set, so later pages neither shift nor repeat while data changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flode.access import policy
from flode.access.protected import Masking
from flode.bulk import compartment
from flode.bulk.selection import SUPPORTING, patient_types
from flode.context import RequestContext
from flode.fhir.bundle import bundle, search_entry
from flode.fhir.dates import parse_instant, parse_range
from flode.fhir.errors import bad_request, not_found
from flode.interactions import logged
from flode.interactions.outcome import Outcome
from flode.interactions.paging import PAGING, Page
from flode.interactions.read import gone
from flode.interactions.search_access import readable
from flode.interactions.services import Services
from flode.store.sql import Args

PARAMS = frozenset({"start", "end", "_since", "_type", *PAGING})


def _query(
    services: Services, id: str, params: Sequence[tuple[str, str]]
) -> compartment.Everything:
    values: dict[str, str] = {}
    for name, value in params:
        if name not in PARAMS:
            raise bad_request(f"'{name}' is not a parameter of $everything", name)
        if name in values and name not in PAGING:
            raise bad_request(f"'{name}' may be given once", name)
        values[name] = value
    types = None
    if "_type" in values:
        types = tuple(t.strip() for t in values["_type"].split(",") if t.strip())
        for name in types:
            if name not in services.definitions.resource_types:
                raise bad_request(f"_type: '{name}' is not a FHIR R4 resource type", "_type")
    return compartment.Everything(
        patient=id,
        start=parse_range(values["start"], "start")[0] if "start" in values else None,
        end=parse_range(values["end"], "end")[1] if "end" in values else None,
        since=parse_instant(values["_since"], "_since") if "_since" in values else None,
        types=types,
    )


def _access(services: Services, ctx: RequestContext) -> Callable[[Args], str | None] | None:
    """What the request may read of a patient's data (flode.access.policy), as SQL over
    `resource r`; types it may not read at all are left out."""
    if ctx.trusted:
        return None
    types = patient_types(services.search.registry, services.definitions.resource_types)
    readable_types = [t for t in types if policy.allows(ctx, t, "r")]
    if all(policy.unrestricted(ctx, t, "r") for t in types):
        return None

    def restriction(args: Args) -> str:
        open_types, parts = [], []
        for resource_type in readable_types:
            sql = policy.restriction(services.search, ctx, resource_type, "r", args)
            if sql is None:
                open_types.append(resource_type)
            else:
                parts.append(f"(r.resource_type = {args.add(resource_type)} AND ({sql}))")
        if open_types:
            parts.append(f"r.resource_type = ANY({args.add(open_types)}::text[])")
        return " OR ".join(parts) or "false"

    return restriction


async def everything(
    services: Services, ctx: RequestContext, id: str, params: Sequence[tuple[str, str]]
) -> Outcome:
    query = _query(services, id, params)
    page = Page.parse(params, services.default_page_size, services.max_page_size)
    patient = await services.store.read("Patient", id)
    # A patient the token may not read is not there for it (docs/access.md).
    if patient is None or not await readable(services, ctx, [("Patient", id)]):
        raise not_found(f"Patient/{id} is not known")
    if patient.deleted:
        raise gone(patient)
    store, pool = services.store, services.store.pool
    stored = None
    if page.results is not None:
        stored = await store.results.page(page.results, page.offset, page.count)
    results = page.results
    if stored is not None:
        versions, size = stored
    else:
        care = compartment.care_dates(services.search.registry, services.definitions.resource_types)
        keys = await compartment.keys(pool, query, care, _access(services, ctx))
        size = len(keys)
        if page.count == 0 or (page.offset == 0 and size <= page.count):
            versions, results = await compartment.versions(pool, keys[: page.count]), None
        else:
            results = await store.results.save(keys)
            found = await store.results.page(results, page.offset, page.count)
            versions = found[0] if found is not None else []
    touched = await logged.touched(services, ctx, versions)
    touched.setdefault(id, [])
    await logged.record(services, ctx, logged.accesses(touched, "everything"))
    masking = Masking.of(ctx, services.protected_identity_units)
    entries = [
        search_entry(
            ctx.base_url,
            masking.version(v),
            "include" if v.resource_type in SUPPORTING else "match",
        )
        for v in versions
    ]
    kept = [(k, v) for k, v in params if k not in PAGING]
    url = f"{ctx.base_url}/Patient/{id}/$everything"
    links = page.links(url, kept, page.offset + page.count < size, results)
    return Outcome(200, body=bundle("searchset", entries, links, size))
