"""SQL pieces the store's modules share: the columns of a version and the WHERE clause of a
search scope."""

from __future__ import annotations

import asyncpg

from flode.store.records import Scope, Version
from flode.store.sql import Args

VERSION_COLUMNS = "v.resource_type, r.id, v.version, v.last_updated, v.method, v.content"


def scope_clause(scope: Scope, args: Args) -> str:
    """The WHERE clause of a search scope over `resource r` (args already hold its values)."""
    where = ["NOT r.deleted", f"({scope.where})"]
    if scope.types is not None and len(scope.types) == 1:
        # Equality, not `= ANY`: the planner carries it into every index subquery's
        # `i.resource_type = r.resource_type`, and the (resource_type, param, …) indexes apply.
        where.insert(0, f"r.resource_type = {args.add(scope.types[0])}")
    elif scope.types is not None:
        where.insert(0, f"r.resource_type = ANY({args.add(list(scope.types))}::text[])")
    return " AND ".join(where)


def version_of(row: asyncpg.Record) -> Version:
    return Version(
        row["resource_type"],
        row["id"],
        row["version"],
        row["last_updated"],
        row["method"],
        row["content"],
    )
