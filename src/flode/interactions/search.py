"""search at type level (https://hl7.org/fhir/R4/search.html): every standard search parameter
with its modifiers and prefixes, chains and `_has`. Unknown parameters are ignored and reported
in an OperationOutcome entry, unless the client asks for `Prefer: handling=strict` (400)."""

from __future__ import annotations

from collections.abc import Sequence

from flode.context import RequestContext
from flode.fhir.bundle import bundle, search_entry
from flode.fhir.errors import Issue, bad_request, operation_outcome
from flode.fhir.search_query import RESULT, parse
from flode.interactions.outcome import Outcome
from flode.interactions.paging import PAGING, Page
from flode.interactions.services import Services
from flode.interactions.write import check_type


async def search(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    strict: bool = False,
) -> Outcome:
    check_type(services, resource_type)
    page = Page.parse(params, services.default_page_size, services.max_page_size)
    query = parse(params)
    compiled = services.search.compile(resource_type, query)
    unknown = compiled.unknown
    if unknown and strict:
        raise bad_request(
            f"Unknown or unsupported search parameter(s): {', '.join(unknown)}", *unknown
        )
    args = compiled.args
    # The snapshot keeps later pages stable while others write.
    where = f"({compiled.where}) AND r.last_updated <= {args.add(page.snapshot)}"
    versions = await services.store.search(resource_type, where, args, page.offset, page.count)
    has_next = len(versions) > page.count
    entries = [search_entry(ctx.base_url, v) for v in versions[: page.count]]
    total: int | None = None
    if query.total != "none":
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
    ignored = set(unknown)
    kept = [(k, v) for k, v in params if k not in PAGING and (k in RESULT or k not in ignored)]
    links = page.links(f"{ctx.base_url}/{resource_type}", kept, has_next)
    return Outcome(200, body=bundle("searchset", entries, links, total))
