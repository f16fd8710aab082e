"""Stored result sets: the ordered keys of a search's matches, written when a search has more
than one page and read by its later pages, which thereby stay stable while others write."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from flode.store.records import Scope, Version
from flode.store.rows import VERSION_COLUMNS, scope_clause, version_of
from flode.store.sql import Args


class ResultSets:
    def __init__(self, pool: asyncpg.Pool, keep: timedelta = timedelta(hours=1)) -> None:
        self.pool = pool
        self.keep = keep

    async def keys(self, scope: Scope, limit: int) -> list[int]:
        """The keys of the first `limit` matches, in the scope's order."""
        args = Args(*scope.args.values)
        rows = await self.pool.fetch(
            f"""SELECT r.pk FROM resource r WHERE {scope_clause(scope, args)}
                ORDER BY {scope.order or "r.last_updated DESC"}, r.pk
                LIMIT {args.add(limit)}""",
            *args.values,
        )
        return [row["pk"] for row in rows]

    async def versions(self, keys: list[int]) -> list[Version]:
        """The current versions of the resources `keys` names, in that order (those since
        deleted left out)."""
        rows = await self.pool.fetch(
            f"""SELECT {VERSION_COLUMNS}
                FROM unnest($1::bigint[]) WITH ORDINALITY AS k (pk, n)
                JOIN resource r ON r.pk = k.pk
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE NOT r.deleted
                ORDER BY k.n""",
            keys,
        )
        return [version_of(row) for row in rows]

    async def save(self, keys: list[int]) -> uuid.UUID:
        """Store a result set (and drop the ones older than `keep`)."""
        id = uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM search_result WHERE created < now() - $1::interval", self.keep
            )
            await conn.execute("INSERT INTO search_result (id, pks) VALUES ($1, $2)", id, keys)
        return id

    async def page(
        self, id: uuid.UUID, offset: int, count: int
    ) -> tuple[list[Version], int] | None:
        """The current versions of the set's matches `offset` to `offset + count` (those since
        deleted left out) and the size of the set; None if the set is gone."""
        size = await self.pool.fetchval(
            "SELECT cardinality(pks) FROM search_result WHERE id = $1", id
        )
        if size is None:
            return None
        rows = await self.pool.fetch(
            f"""SELECT {VERSION_COLUMNS}
                FROM search_result s, unnest(s.pks[$2:$3]) WITH ORDINALITY AS k (pk, n)
                JOIN resource r ON r.pk = k.pk
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE s.id = $1 AND NOT r.deleted
                ORDER BY k.n""",
            id,
            offset + 1,
            offset + count,
        )
        return [version_of(row) for row in rows], int(size)
