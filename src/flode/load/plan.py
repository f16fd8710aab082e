"""What a loaded document asks to be written, decided before anything is written.

Loads are idempotent: every resource a file creates gets an id of its own choosing and is
written with update semantics (`PUT {type}/{id}`), so loading a file again writes new versions
of the same resources instead of duplicates. The id of a created resource is

1. the uuid of its `urn:uuid:` fullUrl (Synthea, and most generators, give one), else
2. the resource's own `id`, else
3. a uuid derived from the file's content (its SHA-256) and the resource's place in it.

A transaction or batch Bundle keeps its own semantics: its POST entries become such PUTs, every
other entry is left as it is (https://hl7.org/fhir/R4/http.html#transaction). A collection
Bundle, an NDJSON file or a file holding one resource is a list of resources, written with
update semantics; references to another entry's fullUrl are rewritten to `{type}/{id}` with
flode.fhir.references, as a transaction does.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flode.fhir.references import (
    conditional,
    is_placeholder,
    references,
    rewrite_in_place,
)
from flode.interactions.update import ID
from flode.load.sources import Line, SourceError

# Derived ids (rule 3) are uuid5 in this namespace of (file SHA-256, place in the file).
NAMESPACE = uuid.UUID("3b0d6c52-8f4e-4a57-9a0e-5e0c9f2d7a61")
_UUID = "urn:uuid:"
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ENTRY = re.compile(r"^Bundle\.entry\[(\d+)\]$")
# Bundles whose entries are not resources to store but results of something else.
_REFUSED = {
    "searchset": "a search result",
    "history": "a history result",
    "batch-response": "a batch response",
    "transaction-response": "a transaction response",
}


@dataclass(slots=True)
class Write:
    """One resource to write as `PUT {resource_type}/{id}`."""

    where: str
    """Where it is in its file, for errors: `Bundle.entry[3]`, `line 17`."""
    resource_type: str
    id: str
    resource: dict[str, Any]
    full_url: str | None = None
    searches: bool = False
    """Whether it holds a conditional reference (`Patient?identifier=…`), which only a search
    inside the writing transaction can resolve."""

    @property
    def key(self) -> tuple[str, str]:
        return self.resource_type, self.id


@dataclass(frozen=True, slots=True)
class BundleWork:
    """A transaction or batch Bundle, its POST entries turned into PUTs."""

    kind: str
    entries: list[Any]


Plan = BundleWork | list[Write]


def identity(
    full_url: Any, resource: dict[str, Any], salt: str, where: str, *, created: bool
) -> str:
    """The id a resource is written under (see the module docstring). The id in the body of a
    create is ignored by FHIR (http.html#create), so there (`created`) only a valid one is
    kept; elsewhere it is the resource's identity, and an invalid one is refused later."""
    if isinstance(full_url, str) and full_url.startswith(_UUID):
        candidate = full_url[len(_UUID) :]
        if ID.match(candidate):
            return candidate
    own = resource.get("id")
    if isinstance(own, str) and (ID.match(own) or not created):
        return own
    return str(uuid.uuid5(NAMESPACE, f"{salt}/{where}"))


def plan(document: Any, salt: str) -> Plan:
    """The work a JSON document (a Bundle or a single resource) asks for."""
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise SourceError("is not a FHIR resource: a JSON object with a resourceType")
    kind = document.get("type") if document["resourceType"] == "Bundle" else None
    if kind in _REFUSED:
        raise SourceError(
            f"is a Bundle of type {kind}, {_REFUSED[kind]}: load its resources as a collection "
            "Bundle or NDJSON instead"
        )
    entries = document.get("entry", [])
    if kind in ("transaction", "batch", "collection") and not isinstance(entries, list):
        raise SourceError("Bundle.entry must be an array")
    if kind in ("transaction", "batch"):
        converted = [_idempotent(raw, index, salt) for index, raw in enumerate(entries)]
        return BundleWork(kind, converted)
    if kind == "collection":
        writes = [_collected(raw, index, salt) for index, raw in enumerate(entries)]
        return resolve(writes, unique=False)
    # A document or message Bundle, or any other resource, is one resource to store.
    return resolve([_write("the file", None, document, salt)], unique=False)


def lines(found: Sequence[Line], salt: str) -> list[Write]:
    """The resources of NDJSON lines (https://hl7.org/fhir/R4/nd-json.html)."""
    return resolve(
        [_write(f"line {line.number}", None, line.resource, salt) for line in found], unique=False
    )


def _write(where: str, full_url: Any, resource: Any, salt: str) -> Write:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise SourceError(f"{where}: not a FHIR resource (a JSON object with a resourceType)")
    kind = resource["resourceType"]
    if "id" in resource and not isinstance(resource["id"], str):
        raise SourceError(f"{where}: the resource's id must be a string")
    id = identity(full_url, resource, salt, where, created=False)
    url = full_url if isinstance(full_url, str) else None
    return Write(where, kind, id, {**resource, "id": id}, url)


def _collected(raw: Any, index: int, salt: str) -> Write:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or "resource" not in raw:
        raise SourceError(f"{where}: a collection entry must hold a resource")
    return _write(where, raw.get("fullUrl"), raw["resource"], salt)


def _idempotent(raw: Any, index: int, salt: str) -> Any:
    """A plain create (`POST {type}`, no ifNoneExist) as `PUT {type}/{id}`; any other entry as
    it is (the transaction machinery checks it)."""
    if not isinstance(raw, dict):
        return raw
    request, resource = raw.get("request"), raw.get("resource")
    if not (isinstance(request, dict) and isinstance(resource, dict)):
        return raw
    url = request.get("url")
    if (
        request.get("method") != "POST"
        or "ifNoneExist" in request
        or not isinstance(url, str)
        or not _TYPE.match(url)
        or resource.get("resourceType") != url
    ):
        return raw
    id = identity(raw.get("fullUrl"), resource, salt, f"Bundle.entry[{index}]", created=True)
    return {
        **raw,
        "resource": {**resource, "id": id},
        "request": {**request, "method": "PUT", "url": f"{url}/{id}"},
    }


def plain_writes(work: BundleWork) -> list[Write] | None:
    """The entries of a transaction Bundle as writes, if each is an unconditional
    `PUT {type}/{id}` (which is what a Bundle of creates becomes); else None."""
    if work.kind != "transaction":
        return None
    writes = []
    for index, raw in enumerate(work.entries):
        if not isinstance(raw, dict):
            return None
        request, resource = raw.get("request"), raw.get("resource")
        if not isinstance(request, dict) or not isinstance(resource, dict):
            return None
        if request.get("method") != "PUT" or set(request) - {"method", "url"}:
            return None
        kind, _, id = str(request.get("url")).partition("/")
        if not _TYPE.match(kind) or not ID.match(id) or resource.get("resourceType") != kind:
            return None
        if resource.get("id") != id:
            return None
        full_url = raw.get("fullUrl")
        url = full_url if isinstance(full_url, str) else None
        writes.append(Write(f"Bundle.entry[{index}]", kind, id, resource, url))
    return resolve(writes, unique=True)


def resolve(writes: list[Write], *, unique: bool) -> list[Write]:
    """The writes with references to each other's fullUrl rewritten to `{type}/{id}`
    (http.html#trules). In a transaction (`unique`) a resource may be written once and a
    fullUrl name one entry; a placeholder (`urn:uuid:`, `urn:oid:`) naming no entry fails."""
    replacements: dict[str, str] = {}
    claimed: dict[tuple[str, str], str] = {}
    for write in writes:
        other = claimed.setdefault(write.key, write.where)
        if unique and other != write.where:
            raise SourceError(
                f"{other} touches {write.resource_type}/{write.id} too; a transaction may "
                "touch each resource only once"
            )
        if write.full_url is not None:
            if unique and write.full_url in replacements:
                raise SourceError(f"{write.where}: another entry has the fullUrl {write.full_url}")
            replacements[write.full_url] = f"{write.resource_type}/{write.id}"
    for write in writes:
        found: list[str] = []
        if replacements:
            # The document is the load's own: its resources are rewritten as they are.
            rewrite_in_place(write.resource, replacements, found)
        else:
            found.extend(references(write.resource))
        if any(is_placeholder(reference) for reference in found):
            # The first in the order `references` finds them, whatever the walk above saw.
            reference = next(r for r in references(write.resource) if is_placeholder(r))
            raise SourceError(
                f"{write.where}: the reference '{reference}' is to no entry of the file: no "
                "entry has it as its fullUrl"
            )
        if not write.searches and any(
            "?" in reference and conditional(reference) is not None for reference in found
        ):
            write.searches = True
    return writes


def chunks(writes: Sequence[Write], size: int) -> Iterator[list[Write]]:
    """The writes in chunks of at most `size`, a resource at most once in each (a transaction
    may touch a resource only once; a later write of it starts the next chunk)."""
    chunk: list[Write] = []
    keys: set[tuple[str, str]] = set()
    for write in writes:
        if len(chunk) >= size or write.key in keys:
            yield chunk
            chunk, keys = [], set()
        chunk.append(write)
        keys.add(write.key)
    if chunk:
        yield chunk


def entry_index(expression: Sequence[str]) -> int | None:
    """The index of the entry an issue's expression names (`Bundle.entry[3]`), if any."""
    for part in expression:
        match = _ENTRY.match(part)
        if match:
            return int(match.group(1))
    return None
