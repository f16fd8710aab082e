"""`_include` and `_revinclude` (https://hl7.org/fhir/R4/search.html#include): the resources a
page's matches refer to, or that refer to them, and with `:iterate` those of the resources so
included, until nothing new turns up."""

from __future__ import annotations

from collections.abc import Sequence

from flode.access import policy
from flode.context import RequestContext
from flode.fhir.errors import Issue, bad_request
from flode.fhir.search_query import Include
from flode.interactions.search_access import readable
from flode.interactions.services import Services
from flode.store.records import LinkQuery, Version
from flode.store.sql import Args

# How many rounds `:iterate` follows at most (a chain of Observation.hasMember, partOf, …).
MAX_ROUNDS = 8


def _check(services: Services, include: Include) -> None:
    name = "_revinclude" if include.reverse else "_include"
    if include.source_type == "*":
        return
    for kind in (include.source_type, include.target_type):
        if kind is not None and kind not in services.definitions.resource_types:
            raise bad_request(f"{name}: '{kind}' is not a FHIR R4 resource type", name)
    if include.param == "*":
        return
    param = services.search.registry.get(include.source_type, include.param)
    if param is None or param.type != "reference":
        raise bad_request(
            f"{name}: '{include.param}' is not a reference parameter of {include.source_type}",
            name,
        )
    if (
        include.target_type is not None
        and param.targets
        and (include.target_type not in param.targets)
    ):
        raise bad_request(
            f"{name}: {include.source_type}.{include.param} cannot refer to {include.target_type}",
            name,
        )


def _step(include: Include, limit: int) -> LinkQuery:
    return LinkQuery(
        None if include.source_type == "*" else include.source_type,
        None if include.param == "*" else include.param,
        include.target_type,
        include.reverse,
        limit,
    )


async def _linked(
    services: Services,
    ctx: RequestContext,
    include: Include,
    limit: int,
    starts: Sequence[tuple[str, str]],
) -> tuple[list[Version], set[tuple[str, str]]]:
    """The resources one step links to `starts`, and which of them the request may read. When
    the step says of which type they are, the query itself leaves out what may not be read;
    otherwise they are looked at once found."""
    step = _step(include, limit)
    kind = step.source_type if include.reverse else step.target_type
    if kind is None or ctx.trusted:
        linked = await services.store.linked(step, starts)
        return linked, await readable(services, ctx, [(v.resource_type, v.id) for v in linked])
    if not policy.allows(ctx, kind, "r"):
        return [], set()

    def admit(args: Args) -> str | None:
        return policy.restriction(services.search, ctx, kind, "r", args)

    linked = await services.store.linked(step, starts, admit)
    return linked, {(v.resource_type, v.id) for v in linked}


def _applies(include: Include, version: Version) -> bool:
    """Whether `version` can be where the include starts: the referring resource of an
    `_include`, the referred-to one of a `_revinclude`."""
    if include.reverse:
        return include.target_type in (None, version.resource_type)
    return include.source_type in ("*", version.resource_type)


async def included(
    services: Services,
    ctx: RequestContext,
    includes: Sequence[Include],
    matches: Sequence[Version],
) -> tuple[list[Version], list[Issue]]:
    """The resources to add to a page with search mode `include` — only those the request may
    read — and a warning if there were more than `services.max_included`."""
    for include in includes:
        _check(services, include)
    if not includes or not matches:
        return [], []
    seen = {(v.resource_type, v.id) for v in matches}
    found: list[Version] = []
    frontier: Sequence[Version] = matches
    for round in range(MAX_ROUNDS):
        steps = [i for i in includes if round == 0 or i.iterate]
        fresh: list[Version] = []
        for include in steps:
            starts = [(v.resource_type, v.id) for v in frontier if _applies(include, v)]
            budget = services.max_included - len(found) - len(fresh)
            linked, allowed = await _linked(services, ctx, include, budget + 1, starts)
            for version in linked:
                key = (version.resource_type, version.id)
                if key not in seen and key in allowed:
                    seen.add(key)
                    fresh.append(version)
            if len(found) + len(fresh) > services.max_included:
                found += fresh[: services.max_included - len(found)]
                return found, [
                    Issue(
                        "warning",
                        "too-costly",
                        f"More than {services.max_included} resources are included: only the "
                        "first of them are returned; narrow the search or page with a smaller "
                        "_count",
                    )
                ]
        if not fresh:
            break
        found += fresh
        frontier = fresh
    return found, []
