"""What a request may do and see, decided in one place for every interaction (DESIGN.md
principle 4): the token's SMART scopes, turned into a yes or no per resource type and action,
and into a SQL restriction over `resource r` that search, `_include`, chains, `_has`, reads and
writes all apply, so that none of them reaches what a plain read would deny.

Actions are SMART v2's letters: c(reate), r(ead), u(pdate), d(elete), s(earch). A grant without
criteria in `user/` or `system/` context reaches every resource of its type; a `patient/` grant
reaches the launch patient's compartment; a granular grant (`?category=laboratory`) the
resources its criteria match. A request is allowed what any one of its grants allows.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from flode.access import pdl
from flode.access.scopes import Grant, Scopes
from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue
from flode.fhir.search_parameters import patient_data_types
from flode.fhir.search_query import parse
from flode.store.search import SearchCompiler
from flode.store.sql import Args

_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@lru_cache(maxsize=4096)
def _scopes(names: frozenset[str]) -> Scopes:
    return Scopes.parse(names)


def scopes_of(ctx: RequestContext) -> Scopes:
    return _scopes(ctx.scopes)


def forbidden(text: str) -> FhirError:
    return FhirError(403, [Issue("error", "forbidden", text)])


def allows(ctx: RequestContext, resource_type: str, action: str) -> bool:
    return ctx.trusted or (
        _declared(ctx, resource_type, action) and scopes_of(ctx).allows(resource_type, action)
    )


def _declared(ctx: RequestContext, resource_type: str, action: str) -> bool:
    """Whether the module declared at registration that it reads (r, s) or writes (c, u, d)
    the type; a client without a declaration (an operator) is held to its scopes alone."""
    declared = ctx.reads if action in "rs" else ctx.writes
    return declared is None or "*" in declared or resource_type in declared


def require(ctx: RequestContext, resource_type: str, action: str) -> None:
    """403 unless the module declared the type (for reading or writing) and some grant of the
    token allows `action` on it."""
    if not ctx.trusted and not _declared(ctx, resource_type, action):
        kind = "reads" if action in "rs" else "writes"
        raise forbidden(
            f"Module {ctx.client_id} has not declared that it {kind} {resource_type}: its "
            f"registration must list it (flode module add --{kind} …)"
        )
    if not allows(ctx, resource_type, action):
        raise forbidden(
            f"The access token has no scope that allows {_VERBS[action]} on {resource_type} "
            f"(e.g. user/{resource_type}.{action} or system/{resource_type}.{action})"
        )


def require_admin(ctx: RequestContext, what: str) -> None:
    """Server administration (`$reindex`, …) needs a token that may do everything."""
    if ctx.trusted:
        return
    if not any(
        g.context == "system" and g.resource_type == "*" and len(g.actions) == 5 and not g.criteria
        for g in scopes_of(ctx).grants
    ):
        raise forbidden(f"{what} needs an administrator's token (scope system/*.cruds)")


def bound(ctx: RequestContext, resource_type: str) -> bool:
    """Whether the Swedish rules on patient data (flode.access.pdl) bind the request for
    resources of the type: a clinician's, for a type that can hold patient data."""
    return pdl.applies(ctx) and resource_type in patient_data_types()


def unrestricted(ctx: RequestContext, resource_type: str, action: str) -> bool:
    """The request reaches every resource of the type it may act on at all."""
    return ctx.trusted or (
        scopes_of(ctx).unrestricted(resource_type, action) and not bound(ctx, resource_type)
    )


def _grant_sql(
    compiler: SearchCompiler, ctx: RequestContext, resource_type: str, grant: Grant, args: Args
) -> str | None:
    parts = []
    if grant.context == "patient":
        if ctx.patient is None:
            return None  # a patient/ scope without a launch patient reaches nothing
        parts.append(
            "EXISTS (SELECT 1 FROM resource_compartment pc WHERE pc.resource_pk = r.pk "
            "AND pc.compartment_type = 'Patient' "
            f"AND pc.compartment_id = {args.add(ctx.patient)})"
        )
    if grant.criteria:
        compiled = compiler.compile(resource_type, parse(grant.criteria), args)
        if compiled.unknown:
            return None  # criteria this server cannot evaluate grant nothing
        parts.append(compiled.where)
    return " AND ".join(f"({p})" for p in parts) or "true"


def restriction(
    compiler: SearchCompiler,
    ctx: RequestContext,
    resource_type: str,
    action: str,
    args: Args,
) -> str | None:
    """SQL over `resource r` that admits exactly the resources of `resource_type` the request
    may `action`; None when it may reach all of them. 403 when it may reach none."""
    require(ctx, resource_type, action)
    if unrestricted(ctx, resource_type, action):
        return None
    law = pdl.restriction(ctx, args) if bound(ctx, resource_type) else None
    if ctx.trusted or scopes_of(ctx).unrestricted(resource_type, action):
        return law
    ors = [
        sql
        for grant in scopes_of(ctx).for_action(resource_type, action)
        if (sql := _grant_sql(compiler, ctx, resource_type, grant, args)) is not None
    ]
    granted = " OR ".join(f"({o})" for o in ors) if ors else "false"
    return granted if law is None else f"({granted}) AND {law}"


def scoped(
    compiler: SearchCompiler,
    ctx: RequestContext,
    resource_type: str,
    action: str,
    args: Args,
) -> str | None:
    """What `restriction` admits by the token's scopes alone, without the Swedish rules: tells
    a resource the law hides (403) from one the token cannot reach (404)."""
    return restriction(compiler, replace(ctx, user_hsa_id=None), resource_type, action, args)
