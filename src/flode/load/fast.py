"""The fast path of `flode load` (`--fast`): versions and index rows streamed with `COPY`.

Each resource is validated and stamped by the same functions as `PUT {type}/{id}`
(flode.interactions.update, flode.interactions.write) and indexed by the same
`Indexer.rows`; only the writing differs. Per chunk, in one database transaction:

1. `INSERT … ON CONFLICT (resource_type, id) DO NOTHING` of the `resource` rows, sorted so two
   loads lock new ids in the same order; the ids that were new get their `pk`.
2. `COPY` of their version-1 rows into `resource_version` and of their index rows into every
   index table but `search_text`, whose rows are one `INSERT … SELECT unnest(…)` so that its
   `tsvector`s are made by `array_to_tsvector` exactly as a single write makes them.
3. One outbox row per version created (flode.load.hooks.announce), as a single create appends.
4. Every resource whose id existed already (loaded before, written by a running server, or
   twice in the chunk) is written as its next version through `replace_in`, the update
   interaction itself.
5. Every Subscription and every SubscriptionTopic (a Basic) is written through `replace_in`
   too, new or not, for the writer's RequestContext: checked and served as an API write of it
   is (flode.events.writes, flode.load.subscriptions). One that is refused fails the chunk as an
   invalid resource does. Only these take the slower way.

So the fast path is safe beside a running server and on a database that holds some of the
ids already; it is fast when the ids are new, as in an initial migration. Conditional
references are resolved before the chunk's transaction, by the search a transaction runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from flode.access import ownership
from flode.context import RequestContext
from flode.fhir.errors import FhirError, precondition_failed
from flode.fhir.references import conditional, references, rewrite
from flode.interactions.services import Services
from flode.interactions.update import Target, prepare_update, replace_in
from flode.interactions.write import conditional_criteria, in_transaction, stamp
from flode.load import hooks, subscriptions
from flode.load.plan import Write
from flode.store.indexer import ROW_COLUMNS, IndexRows
from flode.store.params import text
from flode.store.repository import Transaction

COLUMNS: dict[str, tuple[str, ...]] = {
    table: ("resource_pk", "resource_type", "param", *columns)
    for table, columns in ROW_COLUMNS.items()
}
_CHECKED_TYPES = frozenset((subscriptions.SUBSCRIPTION, subscriptions.TOPIC))
VERSION_COLUMNS = ("resource_pk", "version", "resource_type", "last_updated", "method", "content")
COMPARTMENT_COLUMNS = ("resource_pk", "resource_type", "compartment_type", "compartment_id")

_INSERT = """INSERT INTO resource
    (resource_type, id, version, last_updated, owner_unit, owner_provider)
    SELECT u.resource_type, u.id, 1, $3, u.unit, u.provider
    FROM unnest($1::text[], $2::text[], $4::text[], $5::text[])
        AS u (resource_type, id, unit, provider)
    ON CONFLICT (resource_type, id) DO NOTHING
    RETURNING pk, resource_type, id"""
# The words of each resource go joined by spaces (no word has one, flode.store.params.text): a
# text is cheaper to send than an array of words, and split again it is the same array, made
# into a `tsvector` by `array_to_tsvector` as a single write makes it.
_TEXT = f"""INSERT INTO {text.TABLE} (resource_pk, resource_type, narrative, content)
    SELECT u.pk, u.resource_type, array_to_tsvector(string_to_array(u.narrative, ' ')),
        array_to_tsvector(string_to_array(u.content, ' '))
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
        AS u (pk, resource_type, narrative, content)"""


class Invalid(Exception):
    """A resource the API would refuse: where it is in its file, and the FhirError."""

    def __init__(self, write: Write, error: FhirError) -> None:
        super().__init__(f"{write.where} ({write.resource_type}/{write.id}): {error}")
        self.write = write
        self.error = error


@dataclass(slots=True)
class Prepared:
    write: Write
    content: str
    rows: IndexRows


class FastWriter:
    def __init__(self, services: Services, ctx: RequestContext) -> None:
        self.services = services
        self.ctx = ctx
        """Who writes: whose the Subscriptions written are, and who must be an administrator
        to write a topic (the loader itself, or the requester of an `$import`)."""

    def prepare(self, writes: Sequence[Write], last_updated: datetime) -> list[Prepared]:
        """Validate, stamp and index every write (CPU only); `Invalid` for the first the
        update interaction would refuse."""
        prepared = []
        for write in writes:
            try:
                resource = prepare_update(
                    self.services, write.resource_type, write.id, write.resource
                )
            except FhirError as exc:
                raise Invalid(write, exc) from None
            content = stamp(resource, write.id, 1, last_updated)
            rows = self.services.store.indexer.rows(resource)
            prepared.append(Prepared(write, content, rows))
        return prepared

    async def write(self, writes: Sequence[Write]) -> set[str]:
        """Write the resources in one database transaction (all or none); the ids of the
        Patients whose compartments they are in."""
        if any(write.searches for write in writes):
            await self._conditional_references(writes)
        types = {write.resource_type for write in writes}
        await subscriptions.before(self.services, types)
        last_updated = datetime.now(UTC)
        prepared = self.prepare(writes, last_updated)

        async def work(tx: Transaction) -> None:
            await _write(tx, self.services, self.ctx, prepared, last_updated)

        await in_transaction(self.services, work)
        await subscriptions.written(self.services, types)
        return {patient for item in prepared for patient in _patients(item.rows)}

    async def _conditional_references(self, writes: Sequence[Write]) -> None:
        """Rewrite each conditional reference (`Patient?identifier=…`) to the one resource its
        search matches now, with the criteria and the query a transaction uses for them
        (http.html#trules); 412 if none or several match."""
        services = self.services
        first: dict[str, Write] = {}
        for write in writes:
            for reference in references(write.resource) if write.searches else ():
                found = conditional(reference)
                if found is not None and found[0] in services.definitions.resource_types:
                    first.setdefault(reference, write)
        targets: dict[str, str] = {}

        async def resolve(tx: Transaction) -> None:
            for reference, write in first.items():
                found = conditional(reference)
                assert found is not None
                kind, query = found
                try:
                    params = parse_qsl(query, keep_blank_values=True)
                    where, args = conditional_criteria(services, kind, params)
                except FhirError as exc:
                    raise Invalid(write, exc) from None
                matches = await tx.find(kind, where, args, limit=2)
                if len(matches) != 1:
                    many = "no resource" if not matches else "more than one resource"
                    error = precondition_failed(
                        f"The conditional reference '{reference}' matches {many}"
                    )
                    raise Invalid(write, error)
                targets[reference] = f"{kind}/{matches[0].id}"

        await in_transaction(services, resolve)
        for write in writes:
            if write.searches:
                write.resource = rewrite(write.resource, targets)


async def _write(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    prepared: list[Prepared],
    last_updated: datetime,
) -> None:
    conn = tx.conn
    checked: list[Prepared] = []
    if any(p.write.resource_type in _CHECKED_TYPES for p in prepared):
        copied: list[Prepared] = []
        for item in prepared:
            write = item.write
            slow = subscriptions.checked(write.resource_type, write.resource)
            (checked if slow else copied).append(item)
        prepared = copied
    ordered = sorted(prepared, key=lambda p: p.write.key)
    owners = [ownership.in_tags(p.write.resource) for p in ordered]
    rows = await conn.fetch(
        _INSERT,
        [p.write.resource_type for p in ordered],
        [p.write.id for p in ordered],
        last_updated,
        [o.unit for o in owners],
        [o.provider for o in owners],
    )
    pks = {(row["resource_type"], row["id"]): row["pk"] for row in rows}
    created: list[tuple[int, Prepared]] = []
    existing: list[Prepared] = []
    for item in prepared:
        pk = pks.pop(item.write.key, None)
        if pk is None:
            existing.append(item)
        else:
            created.append((pk, item))
    await _copy(conn, created, last_updated)
    await hooks.announce(
        tx,
        [
            (pk, p.write.resource_type, p.write.id, 1, False, last_updated, _patients(p.rows))
            for pk, p in created
        ],
    )
    for item in [*existing, *checked]:
        await _replace(tx, services, ctx, item.write)


async def _replace(tx: Transaction, services: Services, ctx: RequestContext, write: Write) -> None:
    """Write the next version (the first, if the id is new) as `PUT {type}/{id}` does, in the
    chunk's transaction; `Invalid` if it is refused."""
    try:
        target = Target(write.id, await tx.current(write.resource_type, write.id), "PUT")
        await replace_in(tx, services, ctx, write.resource_type, target, write.resource, None)
    except FhirError as exc:
        raise Invalid(write, exc) from None


def _patients(rows: IndexRows) -> list[str]:
    return [id for kind, id in rows.compartments if kind == "Patient"]


async def _copy(
    conn: asyncpg.Connection | PoolConnectionProxy,
    created: list[tuple[int, Prepared]],
    last_updated: datetime,
) -> None:
    if not created:
        return
    versions = []
    tables: dict[str, list[tuple[Any, ...]]] = {}
    compartments: list[tuple[Any, ...]] = []
    words: list[tuple[Any, ...]] = []
    for pk, item in created:
        kind = item.write.resource_type
        versions.append((pk, 1, kind, last_updated, "PUT", item.content))
        key = (pk, kind)
        for table, found in item.rows.tables.items():
            records = tables.get(table)
            if records is None:
                records = tables[table] = []
            records.extend([key + row for row in found])
        compartments.extend([key + compartment for compartment in item.rows.compartments])
        if item.rows.words is not None:
            narrative, content = item.rows.words
            words.append((pk, kind, _joined(narrative), _joined(content)))
    await conn.copy_records_to_table("resource_version", records=versions, columns=VERSION_COLUMNS)
    for table, records in tables.items():
        await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
    if compartments:
        await conn.copy_records_to_table(
            "resource_compartment", records=compartments, columns=COMPARTMENT_COLUMNS
        )
    if words:
        await conn.execute(_TEXT, *(list(column) for column in zip(*words, strict=True)))


def _joined(words: list[str] | None) -> str | None:
    return None if words is None else " ".join(words)
