"""Reading and writing resource versions. Framework-free: callers pass plain values and get
records back; every write happens inside a `Transaction`."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from flode.access import ownership
from flode.audit import Access, append
from flode.context import RequestContext
from flode.events import outbox
from flode.store import provenance
from flode.store.indexer import DELETE_STATEMENT, Indexer, insert_statement
from flode.store.records import Current, HistoryQuery, LinkQuery, Scope, Version
from flode.store.result_sets import ResultSets
from flode.store.rows import VERSION_COLUMNS, scope_clause, version_of
from flode.store.sql import Args

ATTEMPTS = 5
T = TypeVar("T")


class Collided(Exception):
    """A transaction was aborted by concurrent ones every time it was tried."""

    def __init__(self, attempts: int) -> None:
        super().__init__(f"aborted by concurrent transactions {attempts} times")
        self.attempts = attempts


class Store:
    """The resource store over a connection pool."""

    def __init__(self, pool: asyncpg.Pool, indexer: Indexer) -> None:
        self.pool = pool
        self.indexer = indexer
        self.results = ResultSets(pool)

    async def read(self, resource_type: str, id: str) -> Version | None:
        row = await self.pool.fetchrow(
            f"""SELECT {VERSION_COLUMNS} FROM resource r
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE r.resource_type = $1 AND r.id = $2""",
            resource_type,
            id,
        )
        return None if row is None else version_of(row)

    async def vread(self, resource_type: str, id: str, version: int) -> Version | None:
        row = await self.pool.fetchrow(
            f"""SELECT {VERSION_COLUMNS} FROM resource r
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = $3
                WHERE r.resource_type = $1 AND r.id = $2""",
            resource_type,
            id,
            version,
        )
        return None if row is None else version_of(row)

    async def pk_of(self, resource_type: str, id: str) -> int | None:
        """The storage key of a resource ever written (deleted or not), or None."""
        pk: int | None = await self.pool.fetchval(
            "SELECT pk FROM resource WHERE resource_type = $1 AND id = $2", resource_type, id
        )
        return pk

    async def history(self, query: HistoryQuery) -> list[Version]:
        """Versions newest first; fetches `count + 1` so the caller knows if a next page exists."""
        args = Args(query.before)
        where = ["v.last_updated <= $1"]
        if query.resource_pk is not None:
            # Only the key: a type condition beside it can lead the planner to the type index.
            where.append(f"v.resource_pk = {args.add(query.resource_pk)}")
        elif query.resource_type is not None:
            where.append(f"v.resource_type = {args.add(query.resource_type)}")
        if query.since is not None:
            # "created at or after the given instant" (http.html#history)
            where.append(f"v.last_updated >= {args.add(query.since)}")
        if query.at is not None:
            # A version was current from its last_updated until the next version's.
            low, high = args.add(query.at[0]), args.add(query.at[1])
            where.append(
                f"""v.last_updated < {high} AND NOT EXISTS (
                    SELECT 1 FROM resource_version n WHERE n.resource_pk = v.resource_pk
                    AND n.version = v.version + 1 AND n.last_updated <= {low})"""
            )
        order = (
            "v.version DESC"
            if query.resource_pk is not None
            else "v.last_updated DESC, v.resource_pk"
        )
        rows = await self.pool.fetch(
            f"""SELECT {VERSION_COLUMNS} FROM resource_version v
                JOIN resource r ON r.pk = v.resource_pk
                WHERE {" AND ".join(where)}
                ORDER BY {order}
                OFFSET {args.add(query.offset)} LIMIT {args.add(query.count + 1)}""",
            *args.values,
        )
        return [version_of(row) for row in rows]

    async def search(self, scope: Scope, offset: int, count: int) -> list[Version]:
        """Current, non-deleted versions matching a compiled predicate over `resource r`, in the
        scope's order; fetches `count + 1` so the caller knows if a next page exists."""
        args = Args(*scope.args.values)
        rows = await self.pool.fetch(
            f"""SELECT {VERSION_COLUMNS} FROM resource r
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE {scope_clause(scope, args)}
                ORDER BY {scope.order or "r.last_updated DESC"}, r.pk
                OFFSET {args.add(offset)} LIMIT {args.add(count + 1)}""",
            *args.values,
        )
        return [version_of(row) for row in rows]

    async def count(self, scope: Scope) -> int:
        args = Args(*scope.args.values)
        value = await self.pool.fetchval(
            f"SELECT count(*) FROM resource r WHERE {scope_clause(scope, args)}", *args.values
        )
        return int(value)

    async def estimate(self, scope: Scope) -> int:
        """The planner's estimate of how many resources match: no rows are counted."""
        args = Args(*scope.args.values)
        plan = await self.pool.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM resource r WHERE {scope_clause(scope, args)}",
            *args.values,
        )
        rows: int = orjson.loads(plan)[0]["Plan"]["Plan Rows"]
        return rows

    async def admitted(
        self, resource_type: str, ids: Sequence[str], where: str, args: Args
    ) -> set[str]:
        """Which of `ids` (current, not deleted) satisfy `where`, a predicate over `resource r`
        whose values are in `args`."""
        args = Args(*args.values)
        rows = await self.pool.fetch(
            f"""SELECT r.id FROM resource r
                WHERE r.resource_type = {args.add(resource_type)}
                AND r.id = ANY({args.add(list(ids))}::text[]) AND NOT r.deleted AND ({where})""",
            *args.values,
        )
        return {row["id"] for row in rows}

    async def linked(
        self,
        link: LinkQuery,
        found: Sequence[tuple[str, str]],
        admit: Callable[[Args], str | None] | None = None,
    ) -> list[Version]:
        """The current resources that `found` refer to through a reference parameter
        (`_include`), or that refer to `found` (`_revinclude`, `link.reverse`); only those
        `admit` admits (SQL over `resource r`, its values added to the args given), if given."""
        if not found:
            return []
        args = Args([f[0] for f in found], [f[1] for f in found])
        where = ["true"]
        if admit is not None and (admitted := admit(args)) is not None:
            where.append(f"({admitted})")
        if link.source_type is not None:
            where.append(f"s.resource_type = {args.add(link.source_type)}")
        if link.param is not None:
            where.append(f"s.param = {args.add(link.param)}")
        if link.target_type is not None:
            where.append(f"s.target_type = {args.add(link.target_type)}")
        if link.reverse:
            join = """search_reference s
                JOIN unnest($1::text[], $2::text[]) AS f (type, id)
                  ON s.target_type = f.type AND s.target_id = f.id
                JOIN resource r ON r.pk = s.resource_pk"""
        else:
            join = """resource m
                JOIN unnest($1::text[], $2::text[]) AS f (type, id)
                  ON m.resource_type = f.type AND m.id = f.id
                JOIN search_reference s ON s.resource_pk = m.pk
                JOIN resource r ON r.resource_type = s.target_type AND r.id = s.target_id"""
        rows = await self.pool.fetch(
            f"""SELECT DISTINCT ON (r.pk) {VERSION_COLUMNS} FROM {join}
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE NOT r.deleted AND {" AND ".join(where)}
                ORDER BY r.pk LIMIT {args.add(link.limit)}""",
            *args.values,
        )
        return [version_of(row) for row in rows]

    async def search_contained(
        self, scope: Scope, contained: str, offset: int, count: int
    ) -> tuple[list[tuple[Version, str]], int]:
        """The contained resources matching `contained` (a predicate over `resource_contained r`)
        inside the current versions matching the scope (over `resource r`), as (container
        version, contained id), newest container first and by id within one; fetches
        `count + 1`. Also how many there are in all."""
        args = Args(*scope.args.values)
        # The container's key under another name: inside the lateral subquery `r` is the
        # contained resource.
        source = f"""resource r CROSS JOIN LATERAL (SELECT r.pk AS container_pk) o
            JOIN LATERAL (SELECT r.id FROM resource_contained r
                WHERE r.container_pk = o.container_pk AND ({contained})) k ON true"""
        where = scope_clause(scope, args)
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM {source} WHERE {where}", *args.values
        )
        rows = await self.pool.fetch(
            f"""SELECT {VERSION_COLUMNS}, k.id AS contained_id FROM {source}
                JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
                WHERE {where}
                ORDER BY r.last_updated DESC, r.pk, k.id
                OFFSET {args.add(offset)} LIMIT {args.add(count + 1)}""",
            *args.values,
        )
        return [(version_of(row), row["contained_id"]) for row in rows], int(total)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield Transaction(conn, self.indexer)

    async def retrying(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run `work` in one transaction and return its result once committed.

        PostgreSQL aborts one of two transactions that wait for each other's locks (deadlock,
        SQLSTATE 40P01) or that conflict under a stricter isolation level (40001); nothing of the
        aborted one is written, so it is run again from the start, at most `ATTEMPTS` times.
        `work` must therefore derive everything from what it reads in its transaction.
        """
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self.transaction() as tx:
                    result = await work(tx)
                return result
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == ATTEMPTS:
                    break
                # Jitter, so the transactions that collided do not collide again in step.
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))
        raise Collided(ATTEMPTS)


# Locks only `resource`: under READ COMMITTED a row locked after a concurrent update is re-read
# at its newest version, but a joined `resource_version` row would be the stale one and the join
# would drop the row. The content is read by a second statement, whose snapshot sees the
# version the lock holder committed.
_CURRENT = """SELECT pk, resource_type, id, version, last_updated, deleted, owner_unit,
    owner_provider FROM resource r"""


def _current(row: asyncpg.Record, content: str | None) -> Current:
    return Current(
        row["pk"],
        row["resource_type"],
        row["id"],
        row["version"],
        row["last_updated"],
        row["deleted"],
        content,
        row["owner_unit"],
        row["owner_provider"],
    )


class Transaction:
    """Writes inside one database transaction; rows read here are locked until it ends."""

    def __init__(self, conn: asyncpg.Connection | PoolConnectionProxy, indexer: Indexer) -> None:
        self.conn = conn
        self.indexer = indexer
        self.writer: RequestContext | None = None
        """Who writes, when a client does: its writes of patient data get a Provenance."""

    async def admits(self, resource_type: str, id: str, where: str, args: Args) -> bool:
        """Whether the resource, as this transaction sees it, satisfies `where` (over
        `resource r`, values in `args`)."""
        args = Args(*args.values)
        found: bool = await self.conn.fetchval(
            f"""SELECT EXISTS (SELECT 1 FROM resource r
                WHERE r.resource_type = {args.add(resource_type)} AND r.id = {args.add(id)}
                AND NOT r.deleted AND ({where}))""",
            *args.values,
        )
        return found

    async def lock_key(self, key: str) -> None:
        """Serialise transactions that share `key` (e.g. the criteria of a conditional create)."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)

    async def current(self, resource_type: str, id: str) -> Current | None:
        row = await self.conn.fetchrow(
            f"{_CURRENT} WHERE r.resource_type = $1 AND r.id = $2 FOR UPDATE",
            resource_type,
            id,
        )
        return None if row is None else (await self._with_content([row]))[0]

    async def find(self, resource_type: str, where: str, args: Args, limit: int) -> list[Current]:
        """Current, non-deleted resources matching a compiled predicate, locked."""
        args = Args(*args.values)
        rows = await self.conn.fetch(
            f"""{_CURRENT} WHERE r.resource_type = {args.add(resource_type)} AND NOT r.deleted
                AND {where} ORDER BY r.pk LIMIT {args.add(limit)} FOR UPDATE OF r""",
            *args.values,
        )
        return await self._with_content(rows)

    async def _with_content(self, rows: Sequence[asyncpg.Record]) -> list[Current]:
        """The locked rows with the content of their current versions."""
        if not rows:
            return []
        found = await self.conn.fetch(
            """SELECT v.resource_pk, v.content FROM resource_version v
               JOIN unnest($1::bigint[], $2::integer[]) AS c (pk, version)
               ON v.resource_pk = c.pk AND v.version = c.version""",
            [row["pk"] for row in rows],
            [row["version"] for row in rows],
        )
        content = {f["resource_pk"]: f["content"] for f in found}
        return [_current(row, content[row["pk"]]) for row in rows]

    async def insert(
        self,
        resource_type: str,
        id: str,
        last_updated: datetime,
        method: str,
        content: str,
        resource: dict[str, Any],
    ) -> bool:
        """Write version 1 of a new resource; False if (type, id) exists already. The owner is
        the one its owner tags name (flode.access.ownership decided them)."""
        owner = ownership.in_tags(resource)
        patients = await self._insert(resource_type, id, last_updated, method, content, resource)
        if patients is None:
            return False
        await self._provenance(resource_type, id, 1, last_updated, "CREATE", patients, owner)
        return True

    async def _insert(
        self,
        resource_type: str,
        id: str,
        last_updated: datetime,
        method: str,
        content: str,
        resource: dict[str, Any],
    ) -> list[str] | None:
        """Version 1 of a new resource and the patients whose compartments it is in; None if
        (type, id) exists already."""
        owner = ownership.in_tags(resource)
        pk = await self.conn.fetchval(
            """INSERT INTO resource
               (resource_type, id, version, last_updated, owner_unit, owner_provider)
               VALUES ($1, $2, 1, $3, $4, $5) ON CONFLICT (resource_type, id) DO NOTHING
               RETURNING pk""",
            resource_type,
            id,
            last_updated,
            owner.unit,
            owner.provider,
        )
        if pk is None:
            return None
        await self._version(pk, resource_type, 1, last_updated, method, content)
        patients = await self._index(pk, resource_type, resource, replace=False)
        await outbox.append(self.conn, pk, resource_type, id, 1, "create", last_updated)
        return patients

    async def _provenance(
        self,
        resource_type: str,
        id: str,
        version: int,
        last_updated: datetime,
        activity: str,
        patients: Sequence[str],
        owner: ownership.Owner,
    ) -> None:
        """The access log entries (L4) and the Provenance (L11) of a write of patient data by a
        client: who wrote which version, when, under which unit. Written in the write's
        transaction; the Provenance is owned like its target and in its target's patients'
        compartments, so it is visible exactly where the target is."""
        if self.writer is None or self.writer.trusted or not patients:
            return
        target = f"{resource_type}/{id}"
        await append(
            self.conn,
            self.writer,
            [Access(activity.lower(), activity[0], patient, (target,)) for patient in patients],
        )
        if resource_type in provenance.NOT_RECORDED or not (
            self.writer.user_hsa_id or self.writer.care_unit_hsa_id
        ):
            return  # an operator's write (no clinician, no care unit) is in the access log alone
        record = provenance.of_write(
            self.writer, f"{resource_type}/{id}/_history/{version}", last_updated, activity
        )
        record["extension"] = [provenance.patient_extension(p) for p in patients]
        ownership.apply(record, owner)
        record_id = str(uuid.uuid4())
        content = provenance.stamped(record, record_id, last_updated)
        await self._insert("Provenance", record_id, last_updated, "POST", content, record)

    async def update(
        self,
        current: Current,
        last_updated: datetime,
        method: str,
        content: str | None,
        resource: dict[str, Any] | None,
    ) -> int:
        """Write the next version of `current` (a deletion when `content` is None)."""
        version = current.version + 1
        await self.conn.execute(
            "UPDATE resource SET version = $2, last_updated = $3, deleted = $4 WHERE pk = $1",
            current.pk,
            version,
            last_updated,
            content is None,
        )
        await self._version(
            current.pk, current.resource_type, version, last_updated, method, content
        )
        # The change's outbox event, with the patients its index rows name: a deletion's
        # before they are removed, a new version's once written.
        event = (current.pk, current.resource_type, current.id, version)
        action = outbox.action_of(not current.deleted, content is None)
        patients: list[str] = []
        if content is None:
            await outbox.append(self.conn, *event, action, last_updated)
            if self.writer is not None:
                patients = await self._patients(current.pk)
        found = await self._index(current.pk, current.resource_type, resource, replace=True)
        if content is not None:
            patients = found
            await outbox.append(self.conn, *event, action, last_updated)
        activity = "DELETE" if content is None else "UPDATE"
        owner = ownership.Owner(current.owner_unit, current.owner_provider)
        await self._provenance(
            current.resource_type, current.id, version, last_updated, activity, patients, owner
        )
        return version

    async def _patients(self, pk: int) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT compartment_id FROM resource_compartment WHERE resource_pk = $1 "
            "AND compartment_type = 'Patient'",
            pk,
        )
        return [row[0] for row in rows]

    async def _version(
        self,
        pk: int,
        resource_type: str,
        version: int,
        last_updated: datetime,
        method: str,
        content: str | None,
    ) -> None:
        await self.conn.execute(
            """INSERT INTO resource_version
               (resource_pk, version, resource_type, last_updated, method, content)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            pk,
            version,
            resource_type,
            last_updated,
            method,
            content,
        )

    async def _index(
        self, pk: int, resource_type: str, resource: dict[str, Any] | None, *, replace: bool
    ) -> list[str]:
        """Replace the resource's index rows with those of `resource` (none for a deletion);
        the patients whose compartments it is now in."""
        if replace:
            await self.conn.execute(DELETE_STATEMENT, pk)
        if resource is None:
            return []
        rows = self.indexer.rows(resource)
        statement = insert_statement(pk, resource_type, rows)
        if statement is not None:
            await self.conn.execute(statement[0], *statement[1])
        return [id for kind, id in rows.compartments if kind == "Patient"]
