"""Does one stored version of a resource match a search? Topic criteria, Subscription filters
and the subscriber's access are all SQL predicates over `resource r` (the search compiler's and
flode.access.policy's), so they are answered by the same index rows a search reads.

A predicate is evaluated against the version itself, never against whatever is current when
the dispatcher gets to it: when the version is the current one the index rows describe it and
one statement answers; otherwise (an older version, or the version before a change) the
resource's index rows are replaced by those of that version inside a savepoint that is rolled
back, with the resource row locked meanwhile so that no writer sees the stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flode.fhir import json
from flode.store.indexer import DELETE_STATEMENT, Indexer, insert_statement
from flode.store.sql import Args

Predicate = Callable[[Args], str]
"""Adds its values to the statement's args and returns SQL over `resource r`."""

Conn = asyncpg.Connection | PoolConnectionProxy


class _RolledBack(Exception):
    def __init__(self, values: list[bool]) -> None:
        self.values = values


class VersionMatcher:
    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    async def evaluate(
        self,
        conn: Conn,
        pk: int,
        resource_type: str,
        version: int,
        last_updated: datetime,
        content: str,
        predicates: Sequence[Predicate],
    ) -> list[bool]:
        """Each predicate's answer for the version. Runs inside the caller's transaction."""
        if not predicates:
            return []
        args = Args(pk, version)
        columns = ", ".join(f"coalesce(({p(args)}), false)" for p in predicates)
        row = await conn.fetchrow(
            f"""SELECT r.version = $2 AND NOT r.deleted AS exact, {columns}
                FROM resource r WHERE r.pk = $1""",
            *args.values,
        )
        if row is not None and row[0]:
            return [bool(v) for v in list(row)[1:]]
        try:
            async with conn.transaction():
                await conn.execute("SELECT 1 FROM resource WHERE pk = $1 FOR UPDATE", pk)
                await conn.execute(DELETE_STATEMENT, pk)
                statement = insert_statement(
                    pk, resource_type, self.indexer.rows(json.loads(content))
                )
                if statement is not None:
                    await conn.execute(statement[0], *statement[1])
                await conn.execute(
                    """UPDATE resource SET version = $2, last_updated = $3, deleted = false
                       WHERE pk = $1""",
                    pk,
                    version,
                    last_updated,
                )
                row = await conn.fetchrow(
                    f"SELECT {columns} FROM resource r WHERE r.pk = $1 AND r.version = $2",
                    *args.values,
                )
                raise _RolledBack([] if row is None else [bool(v) for v in row])
        except _RolledBack as done:
            return done.values
