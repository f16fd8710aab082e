"""transaction (https://hl7.org/fhir/R4/http.html#transaction): the entries of a Bundle in one
database transaction, all or nothing.

Entries are processed in the order http.html#trules prescribes: DELETE, POST, PUT and PATCH,
then GET and HEAD (which see the transaction's own writes); the response lists them in the
order of the request. Before anything is written, every entry's resource is given its identity
(a new id, the match of a conditional create or update, the id in the URL), and references to
an entry's `fullUrl` (`urn:uuid:…` placeholders above all) and conditional references
(`Patient?identifier=sys|123`, which must match exactly one resource) are rewritten to
`Type/id` in every resource and in the search URLs of the entries. A resource may be touched
by one entry only. Any failure rolls everything back and is reported as one OperationOutcome
that names the failing entry.

Each entry runs the same steps as its REST interaction (`create`, `update`, `patch`, `delete`,
`read`, `search`, `history`); batch.py runs each entry of a batch through `process` alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any, cast
from urllib.parse import parse_qsl

import asyncpg

from flode.context import RequestContext
from flode.fhir.bundle import etag
from flode.fhir.errors import bad_request, precondition_failed
from flode.fhir.references import conditional, is_placeholder, references, rewrite, rewrite_params
from flode.interactions import history, read, search
from flode.interactions.create import create_in, existing_outcome, find_existing
from flode.interactions.delete import conditional_delete_in, delete_in
from flode.interactions.entries import Entry, about, label, parse_entry, read_kind
from flode.interactions.outcome import Outcome
from flode.interactions.patch import patch_in
from flode.interactions.services import Services
from flode.interactions.update import Target, conditional_target, replace_in
from flode.interactions.write import conditional_criteria, in_transaction, new_id
from flode.store.repository import Store, Transaction


class _InTransaction:
    """Stands in for the connection pool of a `Store` so that the read interactions, run through
    it, query in the transaction and see its writes: every "pooled" connection is the
    transaction's (a nested transaction on it is a savepoint)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        yield self._conn

    async def release(self, conn: Any) -> None:
        pass


def bound(services: Services, tx: Transaction) -> Services:
    """The services with a store whose reads run in `tx`."""
    pool = cast(asyncpg.Pool, _InTransaction(tx.conn))
    return replace(services, store=Store(pool, services.store.indexer))


async def read_entry(services: Services, ctx: RequestContext, entry: Entry) -> Outcome:
    kind, path, params = read_kind(entry.path), entry.path, entry.params
    if kind == "search-system":
        return await search.search(services, ctx, None, params)
    if kind == "search":
        return await search.search(services, ctx, path[0], params)
    if kind == "read":
        outcome = await read.read(services, ctx, path[0], path[1])
        version = outcome.version
        assert version is not None
        tags = {t.strip() for t in (entry.if_none_match or "").split(",") if t.strip()}
        since = entry.if_modified_since
        if tags & {"*", etag(version.version), str(version.version), f'"{version.version}"'} or (
            since is not None and version.last_updated <= since
        ):
            return Outcome(304, version)
        return outcome
    if kind == "vread":
        return await read.vread(services, ctx, path[0], path[1], path[3])
    resource_type = None if kind == "history-system" else path[0]
    id = path[1] if kind == "history-instance" else None
    return await history.history(services, ctx, params, resource_type, id)


class Processing:
    """The entries of one transaction (or one entry of a batch), inside `tx`."""

    def __init__(
        self,
        tx: Transaction,
        services: Services,
        ctx: RequestContext,
        entries: Sequence[Entry],
        *,
        strict: bool,
    ) -> None:
        self.tx, self.services, self.ctx, self.entries = tx, services, ctx, entries
        # Whether a placeholder naming no entry fails (a transaction) or is kept (a batch).
        self.strict = strict
        self.outcomes: dict[int, Outcome] = {}
        self.ids: dict[int, str] = {}
        self.targets: dict[int, Target] = {}
        self.claimed: dict[tuple[str, str], int] = {}
        self.replacements: dict[str, str] = {}

    def _each(self, *methods: str) -> list[Entry]:
        return [entry for entry in self.entries if entry.method in methods]

    def _about(self, entry: Entry) -> AbstractContextManager[None]:
        return about(entry.index, entry.name)

    async def run(self) -> list[Outcome]:
        for entry in self._each("DELETE"):
            with self._about(entry):
                await self._delete(entry)
        for entry in self._each("POST", "PUT", "PATCH"):
            if not entry.conditional:
                with self._about(entry):
                    self._identify(entry, entry.path[1] if len(entry.path) > 1 else new_id())
        for entry in self._each("POST", "PUT"):
            if entry.conditional:
                with self._about(entry):
                    await self._resolve(entry)
        for entry in self._each("POST", "PUT", "PATCH"):
            if entry.index not in self.outcomes:
                with self._about(entry):
                    await self._resolve_references(entry)
        for entry in self._each("POST"):
            if entry.index not in self.outcomes:
                with self._about(entry):
                    resource = rewrite(entry.resource, self.replacements)
                    self.outcomes[entry.index] = await create_in(
                        self.tx,
                        self.services,
                        self.ctx,
                        entry.resource_type,
                        resource,
                        self.ids[entry.index],
                    )
        for entry in self._each("PUT", "PATCH"):
            with self._about(entry):
                self.outcomes[entry.index] = await self._update(entry)
        reader = bound(self.services, self.tx)
        for entry in self._each("GET", "HEAD"):
            with self._about(entry):
                params = rewrite_params(entry.params, self.replacements)
                self.outcomes[entry.index] = await read_entry(
                    reader, self.ctx, replace(entry, params=params)
                )
        return [self.outcomes[entry.index] for entry in self.entries]

    def _claim(self, entry: Entry, resource_type: str, id: str) -> None:
        """http.html#trules: a transaction in which two entries resolve to the same resource
        fails."""
        other = self.claimed.setdefault((resource_type, id), entry.index)
        if other != entry.index:
            raise bad_request(
                f"Bundle.entry[{other}] touches {resource_type}/{id} too; a transaction may "
                "touch each resource only once"
            )

    def _identify(self, entry: Entry, id: str) -> None:
        self._claim(entry, entry.resource_type, id)
        self.ids[entry.index] = id
        if entry.full_url is not None:
            if entry.full_url in self.replacements:
                raise bad_request(f"Another entry has the fullUrl {entry.full_url} too")
            self.replacements[entry.full_url] = f"{entry.resource_type}/{id}"

    async def _delete(self, entry: Entry) -> None:
        if len(entry.path) == 2:
            outcome = await delete_in(self.tx, entry.resource_type, entry.path[1], entry.if_match)
        else:
            criteria = rewrite_params(entry.params, self.replacements)
            outcome = await conditional_delete_in(
                self.tx, self.services, entry.resource_type, criteria
            )
        if outcome.version is not None:
            self._claim(entry, entry.resource_type, outcome.version.id)
        self.outcomes[entry.index] = outcome

    async def _resolve(self, entry: Entry) -> None:
        """The identity of a conditional create or update: what its criteria match."""
        tx, services, kind = self.tx, self.services, entry.resource_type
        if entry.if_none_exist is not None:
            criteria = rewrite_params(entry.if_none_exist, self.replacements)
            existing = await find_existing(tx, services, kind, criteria)
            if existing is not None:
                self.outcomes[entry.index] = existing_outcome(existing)
            self._identify(entry, new_id() if existing is None else existing.id)
            return
        assert entry.resource is not None
        criteria = rewrite_params(entry.params, self.replacements)
        target = await conditional_target(
            tx, services, kind, criteria, entry.resource, entry.if_match
        )
        self.targets[entry.index] = target
        self._identify(entry, target.id)

    async def _resolve_references(self, entry: Entry) -> None:
        source = entry.resource if entry.resource is not None else entry.operations
        for reference in references(source):
            if reference in self.replacements:
                continue
            found = conditional(reference)
            if found is not None and found[0] in self.services.definitions.resource_types:
                self.replacements[reference] = await self._search_one(reference, *found)
            elif self.strict and is_placeholder(reference):
                raise bad_request(
                    f"The reference '{reference}' is to no entry of the Bundle: no entry has "
                    "it as its fullUrl"
                )

    async def _search_one(self, reference: str, resource_type: str, query: str) -> str:
        """A conditional reference becomes the one resource its search matches."""
        params = rewrite_params(parse_qsl(query, keep_blank_values=True), self.replacements)
        where, args = conditional_criteria(self.services, resource_type, params)
        found = await self.tx.find(resource_type, where, args, limit=2)
        if len(found) != 1:
            matches = "no resource" if not found else "more than one resource"
            raise precondition_failed(f"The conditional reference '{reference}' matches {matches}")
        return f"{resource_type}/{found[0].id}"

    async def _update(self, entry: Entry) -> Outcome:
        tx, kind, id = self.tx, entry.resource_type, self.ids[entry.index]
        if entry.method == "PATCH":
            return await patch_in(
                tx,
                self.services,
                self.ctx,
                kind,
                id,
                entry.operations,
                entry.if_match,
                lambda patched: cast(dict[str, Any], rewrite(patched, self.replacements)),
            )
        resource = rewrite(entry.resource, self.replacements)
        target = self.targets.get(entry.index)
        if target is None:
            target = Target(id, await tx.current(kind, id), "PUT")
        return await replace_in(tx, self.services, self.ctx, kind, target, resource, entry.if_match)


async def process(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    entries: Sequence[Entry],
    *,
    strict: bool,
) -> list[Outcome]:
    return await Processing(tx, services, ctx, entries, strict=strict).run()


async def transaction(
    services: Services, ctx: RequestContext, raws: list[Any]
) -> list[tuple[Entry, Outcome]]:
    """Every entry processed, or none (the first failure is raised, naming its entry)."""
    entries = []
    for index, raw in enumerate(raws):
        with about(index, label(index, raw)):
            entries.append(parse_entry(services, ctx, index, raw))
    outcomes = await in_transaction(
        services, lambda tx: process(tx, services, ctx, entries, strict=True), ctx
    )
    return list(zip(entries, outcomes, strict=True))
