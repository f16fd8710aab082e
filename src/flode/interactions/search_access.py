"""What a search may reach (flode.access.policy): the types the token may search, the
restriction each of them is searched under, and the same for the types that chains and `_has`
look into — so that no search finds what a plain read would deny."""

from __future__ import annotations

from collections.abc import Sequence

from flode.access import policy, protected
from flode.context import RequestContext
from flode.interactions.services import Services
from flode.store.search import Access, Hidden
from flode.store.sql import Args


def searchable_types(
    services: Services, ctx: RequestContext, types: list[str] | None
) -> list[str] | None:
    """The types a search of `types` (None: all) covers: all of them when the token may
    search every type unrestricted, else the ones it may search (403 when none)."""
    if ctx.trusted:
        return types
    if types is None:
        everything = sorted(services.definitions.resource_types)
        if all(policy.unrestricted(ctx, t, "s") for t in everything):
            return None
        types = [t for t in everything if policy.allows(ctx, t, "s")]
        if not types:
            raise policy.forbidden("The access token has no scope that allows a search")
        return types
    for resource_type in types:
        policy.require(ctx, resource_type, "s")
    return types


def restriction(
    services: Services, ctx: RequestContext, types: Sequence[str] | None, args: Args
) -> str | None:
    """SQL over `resource r` admitting what the token may search of `types`; None for all."""
    if ctx.trusted or types is None:
        return None
    open_types: list[str] = []
    parts: list[str] = []
    for resource_type in types:
        sql = policy.restriction(services.search, ctx, resource_type, "s", args)
        if sql is None:
            open_types.append(resource_type)
        else:
            parts.append(f"(r.resource_type = {args.add(resource_type)} AND ({sql}))")
    if not parts:
        return None
    if open_types:
        parts.append(f"r.resource_type = ANY({args.add(open_types)}::text[])")
    return " OR ".join(parts)


def hidden(services: Services, ctx: RequestContext) -> Hidden | None:
    """What the request's searches may not match by any parameter, at any depth: Patients with
    protected identity by the demographics the reader sees masked (L13)."""
    masking = protected.Masking.of(ctx, services.protected_identity_units)
    return protected.search_hidden(masking)


def chained(services: Services, ctx: RequestContext) -> Access | None:
    """The restriction of the types chains and `_has` search into."""
    if ctx.trusted:
        return None

    def access(resource_type: str, args: Args) -> str | None:
        return policy.restriction(services.search, ctx, resource_type, "s", args)

    return access


async def readable(
    services: Services, ctx: RequestContext, found: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which of the (type, id) pairs the token may read: what `_include`, `_revinclude` and
    `$everything` may add to a result."""
    if ctx.trusted:
        return set(found)
    by_type: dict[str, list[str]] = {}
    for resource_type, id in found:
        by_type.setdefault(resource_type, []).append(id)
    admitted: set[tuple[str, str]] = set()
    for resource_type, ids in by_type.items():
        if not policy.allows(ctx, resource_type, "r"):
            continue
        args = Args()
        sql = policy.restriction(services.search, ctx, resource_type, "r", args)
        if sql is None:
            admitted.update((resource_type, id) for id in ids)
        else:
            kept = await services.store.admitted(resource_type, ids, sql, args)
            admitted.update((resource_type, id) for id in kept)
    return admitted
