"""search (https://hl7.org/fhir/R4/search.html) at type level, at system level (all types or
`_type`) and in a patient's compartment (`Patient/{id}/{type}` or `/*`): every standard search
parameter with its modifiers and prefixes, chains and `_has`, then `_sort`, paging, `_total`,
`_include`/`_revinclude` and `_summary`/`_elements`.

Unknown parameters are ignored and reported in an OperationOutcome entry, unless the client
asks for `Prefer: handling=strict` (400).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import urlencode

from flode.access import emergency, pdl
from flode.access.touched import named_patients
from flode.context import RequestContext
from flode.fhir.bundle import bundle
from flode.fhir.errors import Issue, bad_request, operation_outcome
from flode.fhir.search_parameters import SearchParameters
from flode.fhir.search_query import RESULT, Criterion, Has, SearchQuery, criterion_name, parse
from flode.interactions import logged
from flode.interactions.included import included
from flode.interactions.outcome import Outcome
from flode.interactions.paging import PAGING, Page
from flode.interactions.search_access import chained, hidden, restriction, searchable_types
from flode.interactions.search_entries import contained_entries, entries_of
from flode.interactions.services import Services
from flode.interactions.write import check_type
from flode.store.records import Scope, Version
from flode.store.search import Access, Hidden, containers_of
from flode.store.sort import order_by
from flode.store.sql import Args

COMPARTMENTS = ("Patient",)


async def search(
    services: Services,
    ctx: RequestContext,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    strict: bool = False,
    compartment: tuple[str, str] | None = None,
) -> Outcome:
    """Search one type, or every type (`resource_type` None) the `_type` parameter or the
    compartment allows; `compartment` is (type, id) for `Patient/{id}/…`."""
    page = Page.parse(params, services.default_page_size, services.max_page_size)
    query = parse(params)
    contained = _contained(params, query, resource_type, compartment)
    unseen = hidden(services, ctx)
    if contained is None:
        types = searchable_types(services, ctx, _types(services, resource_type, query, compartment))
        scope, unknown = _scope(services, types, query, chained(services, ctx), unseen)
    else:
        assert resource_type is not None
        types, scope, unknown = _containers(services, ctx, resource_type, query)
        if contained == "contained":
            return await _contained_resources(
                services, ctx, resource_type, params, query, page, strict, scope, unknown
            )
    if unknown and strict:
        raise bad_request(
            f"Unknown or unsupported search parameter(s): {', '.join(unknown)}", *unknown
        )
    args = scope.args
    # The snapshot keeps pages that are not read from a stored result set stable.
    where = [scope.where, f"r.last_updated <= {args.add(page.snapshot)}"]
    if (allowed := restriction(services, ctx, types, args)) is not None:
        where.append(allowed)
    if compartment is not None:
        where.append(
            "EXISTS (SELECT 1 FROM resource_compartment c WHERE c.resource_pk = r.pk "
            f"AND c.compartment_type = {args.add(compartment[0])} "
            f"AND c.compartment_id = {args.add(compartment[1])})"
        )
    scope = replace(
        scope,
        where=" AND ".join(f"({w})" for w in where),
        order=order_by(services.search.registry, types or (), query.sort, unseen),
    )
    count = 0 if query.summary == "count" else page.count
    stored = None
    if page.results is not None:
        stored = await services.store.results.page(page.results, page.offset, count)
    if stored is not None:
        matches, size = stored
        results, has_next = page.results, page.offset + count < size
        total = None if query.total == "none" else size
    else:
        matches, has_next, results, total = await _run(services, scope, page, count, query)
    extra, issues = await included(services, ctx, query.includes, matches)
    touched = await logged.touched(services, ctx, [*matches, *extra])
    detail = "/".join(p for p in (*(compartment or ()), resource_type or "") if p)
    detail += "?" + urlencode(params) if params else ""
    record = logged.record(services, ctx, logged.accesses(touched, "search", detail=detail))
    if pdl.applies(ctx):
        # The access log and the notice of blocked data, each on a connection of its own.
        named = named_patients(params, resource_type, compartment) | set(touched)
        async with asyncio.TaskGroup() as group:
            notice = group.create_task(emergency.notice(services.store.pool, ctx, sorted(named)))
            group.create_task(record)
        issues += notice.result()
    else:
        await record
    entries = entries_of(services, ctx, query, matches, extra)
    issues += [
        Issue("warning", "not-supported", f"Search parameter '{k}' was ignored") for k in unknown
    ]
    if issues:
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    ignored = set(unknown)
    kept = [(k, v) for k, v in params if k not in PAGING and (k in RESULT or k not in ignored)]
    url = (
        "/".join(p for p in (ctx.base_url, *(compartment or ()), resource_type or "") if p)
        or ctx.base_url
    )
    if compartment is not None and resource_type is None:
        url += "/*"
    links = page.links(url, kept, has_next, results)
    return Outcome(200, body=bundle("searchset", entries, links, total))


CONTAINED_TYPES = ("container", "contained")


def _contained(
    params: Sequence[tuple[str, str]],
    query: SearchQuery,
    resource_type: str | None,
    compartment: tuple[str, str] | None,
) -> str | None:
    """What a search with `_contained` (search.html#contained) returns: None for top-level
    resources only (`_contained=false`, the default), else `container` or `contained`. 400 for
    what it cannot be combined with."""
    kinds = [v for k, v in params if k == "_containedType"]
    for kind in kinds:
        if kind not in CONTAINED_TYPES:
            raise bad_request("_containedType must be container or contained", "_containedType")
    if kinds and query.contained != "true":
        raise bad_request("_containedType applies to _contained=true only", "_containedType")
    if query.contained not in ("true", "both"):
        return None
    if resource_type is None or compartment is not None:
        raise bad_request(
            "_contained=true|both searches one type: GET [base]/{type}?_contained=…", "_contained"
        )
    for criterion in query.criteria:
        if isinstance(criterion, Has) or criterion.chain:
            name = criterion_name(criterion)
            raise bad_request(
                f"'{name}' cannot be combined with _contained={query.contained}", name
            )
    if query.sort:
        raise bad_request(
            f"_sort cannot be combined with _contained={query.contained}", "_sort", "_contained"
        )
    kind = kinds[-1] if kinds else "container"
    if kind == "contained" and query.includes:
        raise bad_request(
            "_include and _revinclude cannot be combined with _containedType=contained",
            "_containedType",
        )
    return kind


def _containers(
    services: Services, ctx: RequestContext, resource_type: str, query: SearchQuery
) -> tuple[list[str] | None, Scope, list[str]]:
    """The types, compiled criteria and ignored parameters of a `_contained=true|both` search
    of `resource_type`: resources of any type that contain a match (and, for `both`, the
    top-level matches). The token must be allowed to search `resource_type`, and only the
    containers it may search are found."""
    check_type(services, resource_type)
    searchable_types(services, ctx, [resource_type])
    types = searchable_types(services, ctx, None)
    args = Args()
    compiled = services.search.compile_contained(resource_type, query, args)
    where = containers_of(compiled.where)
    if query.contained == "both":
        top = services.search.compile(
            resource_type, query, args, chained(services, ctx), hidden(services, ctx)
        )
        where = f"(r.resource_type = {args.add(resource_type)} AND {top.where}) OR {where}"
    return types, Scope(types, where, args), compiled.unknown


async def _contained_resources(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    query: SearchQuery,
    page: Page,
    strict: bool,
    scope: Scope,
    unknown: list[str],
) -> Outcome:
    """`_contained=true&_containedType=contained`: the matching contained resources
    themselves, a page of them at a time (by offset, at the first page's snapshot)."""
    if unknown and strict:
        raise bad_request(
            f"Unknown or unsupported search parameter(s): {', '.join(unknown)}", *unknown
        )
    args = Args(*scope.args.values)
    inner = services.search.compile_contained(resource_type, query, args)
    where = [scope.where, f"r.last_updated <= {args.add(page.snapshot)}"]
    if (allowed := restriction(services, ctx, scope.types, args)) is not None:
        where.append(allowed)
    scope = replace(scope, where=" AND ".join(f"({w})" for w in where), args=args)
    count = 0 if query.summary == "count" else page.count
    found, size = await services.store.search_contained(scope, inner.where, page.offset, count)
    entries = contained_entries(services, ctx, query, found[:count])
    if unknown:
        issues = [
            Issue("warning", "not-supported", f"Search parameter '{k}' was ignored")
            for k in unknown
        ]
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    kept = [(k, v) for k, v in params if k not in PAGING and (k in RESULT or k not in unknown)]
    links = page.links(f"{ctx.base_url}/{resource_type}", kept, len(found) > count)
    total = None if query.total == "none" and query.summary != "count" else size
    return Outcome(200, body=bundle("searchset", entries, links, total))


async def _run(
    services: Services, scope: Scope, page: Page, count: int, query: SearchQuery
) -> tuple[list[Version], bool, uuid.UUID | None, int | None]:
    """A page of a search run now: the matches, whether more follow, the result set stored for
    the pages that follow, and the total."""
    wants_total = query.total != "none" or query.summary == "count"
    results = services.store.results
    if count and page.offset == 0:
        # One query finds the matches' keys in order: the first page is read by key, and a
        # longer result is stored for the pages that follow (and counted by its length).
        keys = await results.keys(scope, services.max_result_set + 1)
        matches = await results.versions(keys[:count])
        if len(keys) <= count:
            return matches, False, None, len(keys) if wants_total else None
        if len(keys) <= services.max_result_set:
            stored = await results.save(keys)
            return matches, True, stored, len(keys) if wants_total else None
        return matches, True, None, await _total(services, scope, query) if wants_total else None
    versions = await services.store.search(scope, page.offset, count)
    has_next = len(versions) > count
    matches = versions[:count]
    if not has_next and (matches or not page.offset):
        return matches, False, None, page.offset + len(matches) if wants_total else None
    return matches, has_next, None, await _total(services, scope, query) if wants_total else None


async def _total(services: Services, scope: Scope, query: SearchQuery) -> int:
    if query.total == "estimate":
        return await services.store.estimate(scope)
    return await services.store.count(scope)


def _types(
    services: Services,
    resource_type: str | None,
    query: SearchQuery,
    compartment: tuple[str, str] | None,
) -> list[str] | None:
    """The types searched; None for every type."""
    for name in query.types:
        check_type(services, name)
    if compartment is not None:
        kind, _ = compartment
        if kind not in COMPARTMENTS:
            raise bad_request(f"Search in the {kind} compartment is not supported")
        registry = services.search.registry
        members = [
            t
            for t in sorted(services.definitions.resource_types)
            if t == kind or registry.compartment(t)
        ]
        if resource_type is not None:
            check_type(services, resource_type)
            if resource_type not in members:
                raise bad_request(f"{resource_type} is not in the {kind} compartment")
            return [resource_type]
        return [t for t in members if not query.types or t in query.types]
    if resource_type is not None:
        check_type(services, resource_type)
        if query.types and query.types != (resource_type,):
            raise bad_request("_type is for searches across types: search the base URL", "_type")
        return [resource_type]
    return list(query.types) or None


def _scope(
    services: Services,
    types: list[str] | None,
    query: SearchQuery,
    access: Access | None,
    unseen: Hidden | None,
) -> tuple[Scope, list[str]]:
    """The compiled criteria and the parameters ignored. A parameter unknown to one of the types
    searched is ignored for all of them; across all types only the parameters every resource
    has are known."""
    compiler = services.search
    common = _common(services)
    if types is None:
        unknown = [criterion_name(c) for c in query.criteria if not _is_common(c, common)]
    else:
        unknown = [
            u for t in types for u in compiler.compile(t, query, None, access, unseen).unknown
        ]
    unknown = list(dict.fromkeys(unknown))
    query = replace(
        query, criteria=tuple(c for c in query.criteria if criterion_name(c) not in unknown)
    )
    if types is None or len(types) == 1 or all(_is_common(c, common) for c in query.criteria):
        # Resource-level parameters mean the same on every type: one compilation serves all.
        first = types[0] if types else min(common.types)
        compiled = compiler.compile(first, query, None, access, unseen)
        return Scope(types, compiled.where, compiled.args), unknown + compiled.unknown
    args = Args()
    parts = [
        f"(r.resource_type = {args.add(t)} "
        f"AND {compiler.compile(t, query, args, access, unseen).where})"
        for t in types
    ]
    return Scope(types, " OR ".join(parts), args), unknown


@dataclass(frozen=True, slots=True)
class _Common:
    codes: frozenset[str]
    types: frozenset[str]


def _is_common(criterion: Criterion | Has, common: _Common) -> bool:
    return (
        isinstance(criterion, Criterion) and not criterion.chain and criterion.name in common.codes
    )


def _common(services: Services) -> _Common:
    return _common_to(services.search.registry, services.definitions.resource_types)


@lru_cache(maxsize=8)  # one registry per set of custom parameters
def _common_to(registry: SearchParameters, types: frozenset[str]) -> _Common:
    """The parameters every resource type has (`_id`, `_lastUpdated`, `_tag`, …)."""
    codes = frozenset.intersection(*(frozenset(registry.for_type(t)) for t in types)) | {"_list"}
    return _Common(codes, frozenset(types))
