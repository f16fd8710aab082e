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

import base64
import binascii
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

import asyncpg

from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.bundle import etag
from flode.fhir.dates import parse_instant
from flode.fhir.errors import FhirError, Issue, bad_request, precondition_failed
from flode.fhir.references import conditional, is_placeholder, references, rewrite, rewrite_params
from flode.interactions import history, read, search
from flode.interactions.create import existing_outcome, find_existing, insert_new, prepare_create
from flode.interactions.delete import conditional_delete_in, delete_in
from flode.interactions.outcome import Outcome
from flode.interactions.patch import patch_in
from flode.interactions.services import Services
from flode.interactions.update import (
    Target,
    conditional_target,
    prepare_conditional_update,
    prepare_update,
    update_in,
    write_version,
)
from flode.interactions.write import check_type, conditional_criteria, in_transaction, new_id
from flode.store.repository import Store, Transaction

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
JSON_PATCH = "application/json-patch+json"


@dataclass
class Entry:
    """One checked entry: its request URL split into path segments and query parameters, and
    for a write the resource (validated) or the JSON Patch."""

    index: int
    name: str
    """How errors name the entry (see `label`)."""
    method: str
    url: str
    full_url: str | None
    path: tuple[str, ...]
    params: list[tuple[str, str]] = field(default_factory=list)
    resource: dict[str, Any] | None = None
    operations: Any = None
    if_match: int | None = None
    if_none_exist: list[tuple[str, str]] | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None

    @property
    def resource_type(self) -> str:
        return self.path[0]

    @property
    def conditional(self) -> bool:
        """A conditional create or update, whose identity is found by searching."""
        return self.if_none_exist is not None or (self.method == "PUT" and len(self.path) == 1)


def label(index: int, raw: Any) -> str:
    """How an entry is named in errors: its index, request and fullUrl, as far as it has them."""
    request = raw.get("request") if isinstance(raw, dict) else None
    method, url = (
        (request.get("method"), request.get("url")) if isinstance(request, dict) else ("", "")
    )
    full_url = raw.get("fullUrl") if isinstance(raw, dict) else None
    where = f"Bundle.entry[{index}]"
    if isinstance(method, str) and isinstance(url, str) and method and url:
        where += f" ({method} {url}"
        where += f", fullUrl {full_url})" if isinstance(full_url, str) else ")"
    return where


@contextmanager
def about(index: int, name: str) -> Iterator[None]:
    """Name the entry in every issue of a failure while processing it."""
    try:
        yield
    except FhirError as exc:
        where = f"Bundle.entry[{index}]"
        issues = [
            Issue(
                issue.severity,
                issue.code,
                f"{name}: {issue.diagnostics}",
                (where, *(e for e in issue.expression if e != where)),
            )
            for issue in exc.issues
        ]
        raise FhirError(exc.status, issues) from None


def _string(container: dict[str, Any], key: str, where: str) -> str | None:
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise bad_request(f"{key} must be a non-empty string", f"{where}.{key}")
    return value


def _split(url: str, base_url: str) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    if base_url and url.startswith(base_url + "/"):
        url = url[len(base_url) + 1 :]
    elif "://" in url.partition("?")[0]:
        raise bad_request(f"'{url}' is not a URL of this server; use one relative to its base")
    path, _, query = url.partition("?")
    segments = tuple(unquote(part) for part in path.strip("/").split("/") if part)
    params = parse_qsl(query, keep_blank_values=True)
    if any("\x00" in part for part in (*segments, *(p for item in params for p in item))):
        raise bad_request("The url holds a NUL character (%00), which no FHIR value may")
    return segments, [(k, v) for k, v in params if k not in ("_format", "_pretty")]


def _criteria(raw: str) -> list[tuple[str, str]]:
    found = parse_qsl(raw.split("?", 1)[1] if "?" in raw else raw, keep_blank_values=True)
    if not found:
        raise bad_request("ifNoneExist must hold search criteria like 'identifier=sys|123'")
    return found


def _version(raw: str | None) -> int | None:
    """The version in an ETag: W/"3", "3" or 3."""
    if raw is None:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 9:
        raise bad_request(f"ifMatch must name a version like W/\"3\", not '{raw}'", "ifMatch")
    return int(text)


def _json_patch(resource: Any) -> Any:
    """The JSON Patch a PATCH entry carries as a Binary (http.html#patch)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
        raise bad_request(
            "A PATCH entry carries its JSON Patch in a Binary resource "
            f"(contentType {JSON_PATCH}); FHIRPath Patch is not supported",
            "resource",
        )
    content_type = str(resource.get("contentType", "")).split(";")[0].strip()
    if content_type != JSON_PATCH:
        raise bad_request(f"The Binary of a PATCH entry must have contentType {JSON_PATCH}")
    try:
        return json.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
    except (binascii.Error, ValueError):
        raise bad_request("The Binary of a PATCH entry must hold base64 data") from None


def read_kind(path: tuple[str, ...]) -> str | None:
    """Which read interaction a GET URL names, or None if none."""
    shapes = {
        0: "search-system",
        1: "history-system" if path[:1] == ("_history",) else "search",
        2: "history-type" if path[1:] == ("_history",) else "read",
        3: "history-instance" if path[2:] == ("_history",) else None,
        4: "vread" if path[2:3] == ("_history",) else None,
    }
    return shapes.get(len(path))


def parse_entry(services: Services, ctx: RequestContext, index: int, raw: Any) -> Entry:
    """Check an entry and prepare its work, without I/O (400, 404 or 422 on failure)."""
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise bad_request("An entry must be a JSON object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise bad_request("request (method and url) is required", f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise bad_request(
            f"request.method must be one of {', '.join(METHODS)}, not {method!r}",
            f"{where}.request.method",
        )
    url = _string(request, "url", f"{where}.request")
    if url is None:
        raise bad_request("request.url is required", f"{where}.request.url")
    full_url = _string(raw, "fullUrl", where)
    path, params = _split(url, ctx.base_url)
    if not path and method not in ("GET", "HEAD"):
        raise bad_request("request.url names no resource type", f"{where}.request.url")
    entry = Entry(index, label(index, raw), method, url, full_url, path, params)
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise bad_request(f"A {method} entry needs a resource", f"{where}.resource")
    if method in ("PUT", "PATCH", "DELETE"):
        entry.if_match = _version(_string(request, "ifMatch", f"{where}.request"))
    kind = path[0] if path else ""
    if method == "POST":
        if len(path) != 1 or params:
            raise bad_request("A POST entry's url is a resource type, e.g. 'Patient'")
        entry.resource = prepare_create(services, kind, resource)
        condition = _string(request, "ifNoneExist", f"{where}.request")
        if condition is not None:
            entry.if_none_exist = _criteria(condition)
            conditional_criteria(services, kind, entry.if_none_exist)
    elif method == "PUT" and len(path) == 2 and not params:
        entry.resource = prepare_update(services, kind, path[1], resource)
    elif method == "PUT" and len(path) == 1 and params:
        entry.resource = prepare_conditional_update(services, kind, params, resource)
    elif method == "PATCH" and len(path) == 2 and not params:
        check_type(services, kind)
        entry.operations = _json_patch(resource)
    elif method == "DELETE" and len(path) == 2 and not params:
        check_type(services, kind)
    elif method == "DELETE" and len(path) == 1 and params:
        check_type(services, kind)
        conditional_criteria(services, kind, params)
    elif method in ("GET", "HEAD") and read_kind(path) is not None:
        if kind not in ("", "_history"):
            check_type(services, kind)
        entry.if_none_match = _string(request, "ifNoneMatch", f"{where}.request")
        since = _string(request, "ifModifiedSince", f"{where}.request")
        entry.if_modified_since = None if since is None else parse_instant(since, "ifModifiedSince")
    else:
        raise bad_request(f"{method} {url} is not an interaction a Bundle entry can hold here")
    return entry


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
                    version = await insert_new(
                        self.tx, entry.resource_type, resource, self.ids[entry.index]
                    )
                    self.outcomes[entry.index] = Outcome(201, version)
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
                kind,
                id,
                entry.operations,
                entry.if_match,
                lambda patched: cast(dict[str, Any], rewrite(patched, self.replacements)),
            )
        resource = rewrite(entry.resource, self.replacements)
        target = self.targets.get(entry.index)
        if target is None:
            return await update_in(tx, kind, id, resource, entry.if_match)
        return await write_version(
            tx, target.current, kind, target.id, resource, target.method, entry.if_match
        )


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
        services, lambda tx: process(tx, services, ctx, entries, strict=True)
    )
    return list(zip(entries, outcomes, strict=True))
