"""history at instance, type and system level (https://hl7.org/fhir/R4/http.html#history)."""

from __future__ import annotations

from collections.abc import Sequence

from flode.access.protected import Masking
from flode.context import RequestContext
from flode.fhir.bundle import bundle, history_entry
from flode.fhir.dates import parse_instant, parse_range
from flode.fhir.errors import not_found
from flode.interactions import logged
from flode.interactions.guard import check_history, check_read
from flode.interactions.outcome import Outcome
from flode.interactions.paging import Page
from flode.interactions.services import Services
from flode.interactions.write import check_type
from flode.store.records import HistoryQuery


async def history(
    services: Services,
    ctx: RequestContext,
    params: Sequence[tuple[str, str]],
    resource_type: str | None = None,
    id: str | None = None,
) -> Outcome:
    if resource_type is not None:
        check_type(services, resource_type)
    if id is not None and resource_type is not None:
        await check_read(services, ctx, resource_type, id)
    else:
        check_history(ctx, resource_type, services.definitions.resource_types)
    pk = None
    if id is not None and resource_type is not None:
        pk = await services.store.pk_of(resource_type, id)
        if pk is None:
            raise not_found(f"{resource_type}/{id} is not known")
    values = dict(params)
    page = Page.parse(params, services.default_page_size, services.max_page_size)
    since = parse_instant(values["_since"], "_since") if "_since" in values else None
    at = parse_range(values["_at"], "_at") if "_at" in values else None
    query = HistoryQuery(
        resource_type, pk, page.snapshot, since, at, offset=page.offset, count=page.count
    )
    versions = await services.store.history(query)
    has_next = len(versions) > page.count
    touched = await logged.touched(services, ctx, versions[: page.count])
    await logged.record(services, ctx, logged.accesses(touched, "history"))
    path = "/".join(p for p in (resource_type, id) if p)
    url = f"{ctx.base_url}/{path}/_history" if path else f"{ctx.base_url}/_history"
    kept = [(k, v) for k, v in params if k in ("_since", "_at")]
    masking = Masking.of(ctx, services.protected_identity_units)
    entries = [history_entry(ctx.base_url, masking.version(v)) for v in versions[: page.count]]
    total = len(entries) + page.offset if id is not None and not has_next else None
    return Outcome(200, body=bundle("history", entries, page.links(url, kept, has_next), total))
