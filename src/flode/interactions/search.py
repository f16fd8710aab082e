"""search at type level, for now limited to `_id`, `identifier` and `_lastUpdated`
(https://hl7.org/fhir/R4/search.html). Unknown parameters are ignored and reported unless the
client asks for `Prefer: handling=strict`."""

from __future__ import annotations

from collections.abc import Sequence

from flode.context import RequestContext
from flode.fhir.bundle import bundle, search_entry
from flode.fhir.errors import Issue, bad_request, operation_outcome
from flode.interactions.outcome import Outcome
from flode.interactions.paging import PAGING, Page
from flode.interactions.services import Services
from flode.interactions.write import check_type
from flode.store.criteria import SUPPORTED, compile_criteria
from flode.store.sql import Args

_RESULT = ("_total",)


async def search(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    strict: bool = False,
) -> Outcome:
    check_type(services, resource_type)
    page = Page.parse(params, services.default_page_size, services.max_page_size)
    criteria = [(k, v) for k, v in params if k in SUPPORTED]
    unknown = [k for k, _ in params if k not in SUPPORTED and k not in PAGING and k not in _RESULT]
    if unknown and strict:
        raise bad_request(
            f"Unknown or unsupported search parameter(s): {', '.join(unknown)}", *unknown
        )
    where, args = compile_criteria(criteria) if criteria else ("true", Args())
    # The snapshot keeps later pages stable while others write.
    where = f"({where}) AND r.last_updated <= {args.add(page.snapshot)}"
    versions = await services.store.search(resource_type, where, args, page.offset, page.count)
    has_next = len(versions) > page.count
    entries = [search_entry(ctx.base_url, v) for v in versions[: page.count]]
    total: int | None = None
    if dict(params).get("_total") != "none":
        if has_next or (page.offset and not entries):
            total = await services.store.count(resource_type, where, args)
        else:
            total = page.offset + len(entries)
    if unknown:
        outcome = operation_outcome(
            [
                Issue("warning", "not-supported", f"Search parameter '{k}' was ignored")
                for k in unknown
            ]
        )
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    url = f"{ctx.base_url}/{resource_type}"
    links = page.links(url, [*criteria, *[(k, v) for k, v in params if k in _RESULT]], has_next)
    return Outcome(200, body=bundle("searchset", entries, links, total))
