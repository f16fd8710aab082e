"""The access checks of reads, history and writes (flode.access.policy): one resource at a
time. A resource outside what the token may read answers 404, as if it did not exist, so that a
refusal tells nothing about it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from flode.access import explain, policy
from flode.context import RequestContext
from flode.fhir.errors import not_found
from flode.interactions import logged
from flode.interactions.outcome import Outcome
from flode.interactions.services import Services
from flode.interactions.write import in_transaction
from flode.store.repository import Transaction
from flode.store.sql import Args


async def check_read(services: Services, ctx: RequestContext, resource_type: str, id: str) -> None:
    """403 if the token may read no resource of the type, or the Swedish rules hide this one
    from the clinician asking (saying which rule); 404 if the token cannot reach it."""
    policy.require(ctx, resource_type, "r")
    if policy.unrestricted(ctx, resource_type, "r"):
        return
    args = Args()
    sql = policy.restriction(services.search, ctx, resource_type, "r", args)
    assert sql is not None
    if id in await services.store.admitted(resource_type, [id], sql, args):
        return
    if policy.bound(ctx, resource_type):
        args = Args()
        scoped = policy.scoped(services.search, ctx, resource_type, "r", args)
        if id in await services.store.admitted(resource_type, [id], scoped or "true", args):
            denial = await explain.denial(services.store.pool, ctx, resource_type, id)
            await logged.denied(services, ctx, denial, resource_type, id)
            raise denial
    raise not_found(f"{resource_type}/{id} is not known")


def check_history(ctx: RequestContext, resource_type: str | None, types: frozenset[str]) -> None:
    """The history of a type, or of the whole server, lists every resource of it: only a token
    that may read them all may see it."""
    for kind in [resource_type] if resource_type is not None else sorted(types):
        if not policy.unrestricted(ctx, kind, "r"):
            raise policy.forbidden(
                f"The history of {'all resources' if resource_type is None else kind} needs a "
                "scope that reaches every resource of it (user/ or system/ without criteria)"
            )


async def check_write(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    id: str,
    action: str,
) -> None:
    """Inside a write's transaction: 403 unless the resource, as the transaction sees it (the
    version about to be replaced, or the one just written), is one the token may `action`."""
    if policy.unrestricted(ctx, resource_type, action):
        return
    args = Args()
    sql = policy.restriction(services.search, ctx, resource_type, action, args)
    assert sql is not None
    if not await tx.admits(resource_type, id, sql, args):
        raise policy.forbidden(
            f"{resource_type}/{id} is outside what the access token may "
            f"{ {'c': 'create', 'u': 'update', 'd': 'delete'}[action] } (its patient or criteria)"
        )


async def guarded(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    action: str,
    id: str | None,
    work: Callable[[Transaction], Awaitable[Outcome]],
) -> Outcome:
    """Run a write's `work` in its transaction, for a token that may `action` (c, u or d) on
    the type: if its grants reach only some resources (a patient's, or those matching
    criteria), the resource `id` must be one of them before the write (when it exists) and
    the written one after it; otherwise nothing is written and the answer is 403."""
    policy.require(ctx, resource_type, action)
    if policy.unrestricted(ctx, resource_type, action):
        return await in_transaction(services, work, ctx)
    if id is None and action == "d":
        raise policy.forbidden(
            "A conditional delete needs a scope that reaches every resource of the type"
        )

    async def checked(tx: Transaction) -> Outcome:
        if id is not None and await tx.admits(resource_type, id, "true", Args()):
            await check_write(tx, services, ctx, resource_type, id, action)
        outcome = await work(tx)
        version = outcome.version
        if action != "d" and version is not None and not version.deleted:
            await check_write(tx, services, ctx, resource_type, version.id, action)
        return outcome

    return await in_transaction(services, checked, ctx)
