"""Bundles that Flöde returns (https://hl7.org/fhir/R4/bundle.html).

Stored resources are embedded as `orjson.Fragment`s: their JSON is spliced in as stored, never
parsed and serialised again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from flode.fhir.dates import format_instant
from flode.store.records import Version

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}


def etag(version: int) -> str:
    return f'W/"{version}"'


def history_entry(base_url: str, version: Version) -> dict[str, Any]:
    url = f"{version.resource_type}/{version.id}"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{url}"}
    if version.content is not None:
        entry["resource"] = orjson.Fragment(version.content)
    status = "201 Created" if version.version == 1 else _STATUS[version.method]
    entry["request"] = {
        "method": version.method,
        "url": version.resource_type if version.method == "POST" else url,
    }
    entry["response"] = {
        "status": status,
        "etag": etag(version.version),
        "lastModified": format_instant(version.last_updated),
    }
    return entry


def search_entry(
    base_url: str, version: Version, mode: str = "match", resource: Any = None
) -> dict[str, Any]:
    """A searchset entry for the stored version, or for `resource` made from it (a subset)."""
    return {
        "fullUrl": f"{base_url}/{version.resource_type}/{version.id}",
        "resource": orjson.Fragment(version.content or "null") if resource is None else resource,
        "search": {"mode": mode},
    }


def link(relation: str, url: str, params: Sequence[tuple[str, str]]) -> dict[str, str]:
    query = urlencode(list(params))
    return {"relation": relation, "url": f"{url}?{query}" if query else url}


def bundle(
    kind: str,
    entries: list[dict[str, Any]],
    links: list[dict[str, str]],
    total: int | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(datetime.now(UTC))},
        "type": kind,
    }
    if total is not None:
        out["total"] = total
    out["link"] = links
    if entries:
        out["entry"] = entries
    return out
