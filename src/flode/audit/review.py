"""Reviewing the log (loggkontroll, DOMAIN.md L5): search and read of the entries as
AuditEvents, for the HTTP API and the command line alike.

Who may: a token that may search (or read) AuditEvent (`user/AuditEvent.rs` for reviewers,
flode.access.policy). A token whose AuditEvent grants are all `patient/` ones sees the entries
of its launch patient only. Every review is logged itself (`log-review`), a refused one too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import asyncpg
import orjson

from flode.access import policy
from flode.audit.query import Query, compile_query
from flode.audit.record import Access, Executor, append
from flode.context import RequestContext
from flode.fhir.bundle import bundle, link
from flode.fhir.errors import FhirError, Issue, bad_request, not_found, operation_outcome

AUDIT_EVENT = "AuditEvent"
T = TypeVar("T")


def reach(ctx: RequestContext, action: str) -> str | None:
    """The patient whose entries alone the request may see; None for every entry. 403 when it
    may see none."""
    policy.require(ctx, AUDIT_EVENT, action)
    # By the scopes alone: reviewing the log is no care of a patient, so the rules on patient
    # data (who may read whose record) do not decide it; the reviewer's scopes do.
    if ctx.trusted or policy.scopes_of(ctx).unrestricted(AUDIT_EVENT, action):
        return None
    grants = policy.scopes_of(ctx).for_action(AUDIT_EVENT, action)
    if ctx.patient and any(g.context == "patient" and not g.criteria for g in grants):
        return ctx.patient
    raise policy.forbidden(
        "The access token's AuditEvent scopes reach no entries: a patient/ scope needs a launch "
        "patient, and scopes with search criteria are not supported on the log"
    )


async def logged(
    executor: Executor,
    ctx: RequestContext,
    interaction: str,
    detail: str | Callable[[], str],
    patients: Callable[[], Sequence[str | None]],
    work: Callable[[], Awaitable[T]],
) -> T:
    """Run a review and log it: one entry per patient `patients` names once `work` is done
    (or one of no patient), with `detail` (or what it gives once `work` is done); a refused
    or failed review is logged as such (outcome 4)."""
    try:
        result = await work()
    except FhirError as exc:
        refused = Access(interaction, "E", None, outcome="4", detail=str(exc))
        await append(executor, ctx, [refused])
        raise
    named = list(dict.fromkeys(patients())) or [None]
    asked = detail if isinstance(detail, str) else detail()
    await append(executor, ctx, [Access(interaction, "E", p, detail=asked) for p in named])
    return result


def describe(params: Sequence[tuple[str, str]], path: str = AUDIT_EVENT) -> str:
    return f"{path}?{urlencode(list(params))}" if params else path


@dataclass(frozen=True, slots=True)
class Found:
    rows: list[asyncpg.Record]
    next_cursor: int | None
    total: int | None
    query: Query


async def find(
    executor: Executor,
    ctx: RequestContext,
    params: Sequence[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    strict: bool = False,
) -> Found:
    """One page of the entries `params` select, newest first unless `_sort=date`; logged."""
    named: list[str] = []

    async def work() -> Found:
        only = reach(ctx, "s")
        query = compile_query(params, default_count, max_count, only)
        named.extend(query.patients if only is None else [only])
        if query.unknown and strict:
            raise bad_request(
                f"Unknown or unsupported search parameter(s): {', '.join(query.unknown)}",
                *query.unknown,
            )
        sql, args = query.page_sql(query.count + 1)
        rows = list(await executor.fetch(sql, *args))
        more = len(rows) > query.count
        rows = rows[: query.count]
        total = None
        if query.total:
            sql, args = query.count_sql()
            total = await executor.fetchval(sql, *args)
        cursor = rows[-1]["seq"] if more and rows else None
        return Found(rows, cursor, total, query)

    def patients() -> list[str | None]:
        return list(named)

    return await logged(executor, ctx, "log-review", describe(params), patients, work)


def search_bundle(ctx: RequestContext, found: Found) -> dict[str, Any]:
    """The searchset of a page: entries, links (`next` by key), ignored parameters noted."""
    url = f"{ctx.base_url}/{AUDIT_EVENT}"
    query = found.query
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{url}/{row['id']}",
            "resource": orjson.Fragment(row["content"]),
            "search": {"mode": "match"},
        }
        for row in found.rows
    ]
    if query.unknown:
        issues = [
            Issue("warning", "not-supported", f"Search parameter '{name}' was ignored")
            for name in query.unknown
        ]
        entries.append({"resource": operation_outcome(issues), "search": {"mode": "outcome"}})
    fixed = [*query.kept, ("_count", str(query.count))]
    fixed = list(dict.fromkeys(fixed))
    here = fixed if query.cursor is None else [*fixed, ("_cursor", str(query.cursor))]
    links = [link("self", url, here), link("first", url, fixed)]
    if found.next_cursor is not None:
        links.append(link("next", url, [*fixed, ("_cursor", str(found.next_cursor))]))
    return bundle("searchset", entries, links, found.total)


async def read(executor: Executor, ctx: RequestContext, id: str) -> str:
    """One entry's AuditEvent; 404 when there is none the request may see."""
    found: list[str | None] = []

    async def work() -> str:
        only = reach(ctx, "r")
        row = await executor.fetchrow(
            "SELECT patient_id, content FROM audit_event WHERE id = $1", id
        )
        if row is None or (only is not None and row["patient_id"] != only):
            raise not_found(f"AuditEvent/{id} is not known")
        found.append(row["patient_id"])
        content: str = row["content"]
        return content

    def patients() -> list[str | None]:
        return found

    return await logged(executor, ctx, "log-review", f"{AUDIT_EVENT}/{id}", patients, work)
