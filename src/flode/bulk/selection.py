"""Which resources an export writes, as SQL over `resource r`
(https://hl7.org/fhir/uv/bulkdata/export.html#query-parameters).

An export reads the state of the server at its `transactionTime`: each resource in the version
that was current then (a resource updated since is written as it was; one created since is left
out). Resources are read per type in id order, in batches that start after the last id written,
so a run can stop anywhere and resume.

- system level: every resource of the types.
- patient level: the resources in the Patient compartment of every patient, plus the
  Practitioners, Organizations, Locations and Medications those resources refer to.
- group level: the same for the patients the Group has as `member.entity`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flode.access import policy, protected
from flode.context import RequestContext
from flode.fhir.errors import bad_request
from flode.fhir.search_parameters import SearchParameters
from flode.fhir.search_query import SearchQuery, parse
from flode.store.search import Access, Hidden, SearchCompiler
from flode.store.sql import Args

Connection = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy

SUPPORTING = ("Location", "Medication", "Organization", "Practitioner")
"""Types outside the Patient compartment that a patient's data refers to and that are needed to
read it: exported (and returned by `$everything`) when a patient's resource refers to them."""

# A `_typeFilter` value is a list of queries separated by commas; a comma inside a query ORs
# search values, so only a comma followed by `Type?` starts the next query.
_NEXT_QUERY = re.compile(r",(?=[A-Z][A-Za-z]*\?)")


@dataclass(frozen=True, slots=True)
class Selection:
    level: str
    """system, patient or group"""
    types: tuple[str, ...]
    transaction_time: datetime
    since: datetime | None = None
    patients: tuple[str, ...] | None = None
    """The patients of a group-level export (or of `patient`); None: every patient."""
    type_filters: tuple[str, ...] = ()
    """`_typeFilter` queries, `Type?param=value&…`."""


def patient_types(registry: SearchParameters, resource_types: Iterable[str]) -> list[str]:
    """The types of a patient's data: Patient, the other types of its compartment, then the
    supporting types."""
    members = sorted(t for t in resource_types if t != "Patient" and registry.compartment(t))
    return ["Patient", *members, *SUPPORTING]


def split_type_filters(values: Sequence[str]) -> list[str]:
    """Every `_typeFilter` query; repeated parameters count as comma-separated values."""
    return [query for value in values for query in _NEXT_QUERY.split(value) if query]


def parse_type_filter(raw: str, resource_types: frozenset[str]) -> tuple[str, SearchQuery]:
    """`Observation?code=…&date=ge2024` as its type and parsed query (only criteria)."""
    resource_type, mark, query = raw.partition("?")
    if not mark or resource_type not in resource_types:
        raise bad_request(
            f"_typeFilter '{raw}' is not a search of a FHIR R4 resource type like "
            "'Observation?code=…'",
            "_typeFilter",
        )
    parsed = parse(parse_qsl(query, keep_blank_values=True))
    if (
        parsed.sort
        or parsed.includes
        or parsed.summary
        or parsed.elements
        or parsed.total
        or parsed.types
        or parsed.count is not None
    ):
        raise bad_request(
            f"_typeFilter '{raw}' may hold search criteria only, no result parameters "
            "(_include, _sort, _count, …)",
            "_typeFilter",
        )
    return resource_type, parsed


def compile_filters(
    compiler: SearchCompiler,
    filters: Sequence[str],
    args: Args,
    ctx: RequestContext | None = None,
) -> dict[str, list[str]]:
    """The SQL of each type's `_typeFilter` queries (ORed by the caller). A parameter the
    server does not know is refused: ignoring it would export more than was asked for. Chains
    and `_has` look only into what `ctx` may search."""
    found: dict[str, list[str]] = {}
    access: Access | None = None
    hidden: Hidden | None = None
    if ctx is not None and not ctx.trusted:
        context = ctx

        def access(resource_type: str, args: Args) -> str | None:
            return policy.restriction(compiler, context, resource_type, "s", args)

        # No filter finds a protected patient by masked demographics (L13), not even for the
        # care units that see them: an export's filters are held to the strictest reader.
        hidden = protected.search_hidden(protected.Masking.of(ctx, ()))

    for raw in filters:
        resource_type, query = parse_type_filter(raw, compiler.resource_types)
        compiled = compiler.compile(resource_type, query, args, access, hidden)
        if compiled.unknown:
            raise bad_request(
                f"_typeFilter '{raw}': unknown search parameter(s) "
                f"{', '.join(compiled.unknown)} for {resource_type}",
                "_typeFilter",
            )
        found.setdefault(resource_type, []).append(compiled.where)
    return found


def _membership(selection: Selection, resource_type: str, args: Args) -> str | None:
    """The patient scope of a patient- or group-level export for one type."""
    if selection.level == "system":
        return None
    patients = ""
    if selection.patients is not None:
        patients = f" AND c.compartment_id = ANY({args.add(list(selection.patients))}::text[])"
    if resource_type in SUPPORTING:
        # Referred to by a resource of one of the patients' compartments.
        return (
            "EXISTS (SELECT 1 FROM search_reference s JOIN resource_compartment c "
            "ON c.resource_pk = s.resource_pk WHERE s.target_type = r.resource_type "
            f"AND s.target_id = r.id AND c.compartment_type = 'Patient'{patients})"
        )
    return (
        "EXISTS (SELECT 1 FROM resource_compartment c WHERE c.resource_pk = r.pk "
        f"AND c.compartment_type = 'Patient'{patients})"
    )


def readable(
    compiler: SearchCompiler, ctx: RequestContext | None, resource_type: str, args: Args
) -> str | None:
    """SQL over `resource r` admitting the resources of the type `ctx` may read
    (flode.access.policy); None when it may read them all (or acts as Flöde itself)."""
    if ctx is None or ctx.trusted:
        return None
    return policy.restriction(compiler, ctx, resource_type, "r", args)


def predicate(
    selection: Selection,
    resource_type: str,
    compiler: SearchCompiler | None,
    args: Args,
    ctx: RequestContext | None = None,
) -> str:
    """Which current resources of the type the export selects, over `resource r` (the
    resource's state at the transaction time is checked by the batch query), of those `ctx`
    may read."""
    where = [f"r.resource_type = {args.add(resource_type)}"]
    if ctx is not None and not ctx.trusted:
        assert compiler is not None, "access rules need the search compiler"
        restriction = readable(compiler, ctx, resource_type, args)
        if restriction is not None:
            where.append(restriction)
    if selection.since is not None:
        where.append(f"r.last_updated > {args.add(selection.since)}")
    membership = _membership(selection, resource_type, args)
    if membership is not None:
        where.append(membership)
    if selection.type_filters:
        assert compiler is not None, "a _typeFilter needs the search compiler"
        ours = [f for f in selection.type_filters if f.partition("?")[0] == resource_type]
        if ours:
            queries = compile_filters(compiler, ours, args, ctx)[resource_type]
            where.append(" OR ".join(f"({q})" for q in queries))
    return " AND ".join(f"({w})" for w in where)


async def batch(
    conn: Connection,
    selection: Selection,
    resource_type: str,
    after: str,
    limit: int,
    compiler: SearchCompiler | None = None,
    ctx: RequestContext | None = None,
) -> list[tuple[str, str]]:
    """(id, JSON) of the next `limit` resources of the type after id `after`, each in the
    version current at the transaction time."""
    args = Args()
    where = predicate(selection, resource_type, compiler, args, ctx)
    at = args.add(selection.transaction_time)
    since = ""
    if selection.since is not None:
        since = f" AND v.last_updated > {args.add(selection.since)}"
    rows = await conn.fetch(
        f"""SELECT r.id, v.content FROM resource r
            JOIN resource_version v ON v.resource_pk = r.pk AND v.version = CASE
                WHEN r.last_updated <= {at} THEN r.version
                ELSE (SELECT max(w.version) FROM resource_version w
                      WHERE w.resource_pk = r.pk AND w.last_updated <= {at}) END
            WHERE {where} AND r.id > {args.add(after)}
              AND (NOT r.deleted OR r.last_updated > {at})
              AND v.content IS NOT NULL{since}
            ORDER BY r.id LIMIT {args.add(limit)}""",
        *args.values,
    )
    return [(row["id"], row["content"]) for row in rows]


async def count(
    conn: Connection,
    selection: Selection,
    resource_type: str,
    compiler: SearchCompiler | None = None,
    ctx: RequestContext | None = None,
) -> int:
    """How many resources of the type the export will write, near enough for progress: the
    current state is counted, not the state at the transaction time."""
    args = Args()
    where = predicate(selection, resource_type, compiler, args, ctx)
    value = await conn.fetchval(
        f"SELECT count(*) FROM resource r WHERE {where} AND NOT r.deleted", *args.values
    )
    return int(value)


async def deleted(conn: Connection, selection: Selection, resource_type: str) -> list[str]:
    """The ids of the type's resources deleted after `_since` and by the transaction time
    (system level only: a deleted resource has no index rows left to place it in a
    patient's compartment)."""
    assert selection.since is not None
    rows = await conn.fetch(
        """SELECT r.id FROM resource r
           JOIN resource_version v ON v.resource_pk = r.pk AND v.version = (
               SELECT max(w.version) FROM resource_version w
               WHERE w.resource_pk = r.pk AND w.last_updated <= $3)
           WHERE r.resource_type = $1 AND r.last_updated > $2 AND v.content IS NULL
             AND v.last_updated > $2
           ORDER BY r.id""",
        resource_type,
        selection.since,
        selection.transaction_time,
    )
    return [row["id"] for row in rows]


async def group_members(conn: Connection, group_id: str) -> list[str] | None:
    """The ids of the patients a Group has as `member.entity`; None if there is no such
    Group (or it was deleted)."""
    exists = await conn.fetchval(
        "SELECT NOT deleted FROM resource WHERE resource_type = 'Group' AND id = $1", group_id
    )
    if not exists:
        return None
    rows = await conn.fetch(
        """SELECT DISTINCT s.target_id FROM resource g
           JOIN search_reference s ON s.resource_pk = g.pk AND s.resource_type = 'Group'
           WHERE g.resource_type = 'Group' AND g.id = $1 AND s.param = 'member'
             AND s.target_type = 'Patient'
           ORDER BY s.target_id""",
        group_id,
    )
    return [row["target_id"] for row in rows]


async def existing_patients(conn: Connection, ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        """SELECT id FROM resource WHERE resource_type = 'Patient' AND NOT deleted
           AND id = ANY($1::text[])""",
        list(ids),
    )
    return {row["id"] for row in rows}
