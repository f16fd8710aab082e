"""The entries of a searchset page: matches, then included resources, whole or subsetted by
`_summary` and `_elements`; patients with protected identity masked as the request may see
them (flode.access.protected), before any subsetting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flode.access.protected import Masking
from flode.context import RequestContext
from flode.fhir import json
from flode.fhir.bundle import search_entry
from flode.fhir.search_query import SearchQuery
from flode.fhir.subsetting import elements, summary
from flode.interactions.services import Services
from flode.store.records import Version


def entries_of(
    services: Services,
    ctx: RequestContext,
    query: SearchQuery,
    matches: Sequence[Version],
    included: Sequence[Version],
) -> list[dict[str, Any]]:
    masking = Masking.of(ctx, services.protected_identity_units)
    pairs = [(masking.version(v), "match") for v in matches]
    pairs += [(masking.version(v), "include") for v in included]
    subsetted = query.summary in ("true", "text", "data") or query.elements
    if not subsetted:
        return [search_entry(ctx.base_url, v, mode) for v, mode in pairs]
    out = []
    for version, mode in pairs:
        resource = json.loads(version.content or "null")
        if query.summary in ("true", "text", "data"):
            resource = summary(services.definitions, resource, query.summary)
        elif query.elements:
            resource = elements(services.definitions, resource, query.elements)
        out.append(search_entry(ctx.base_url, version, mode, resource))
    return out


def contained_entries(
    services: Services,
    ctx: RequestContext,
    query: SearchQuery,
    matches: Sequence[tuple[Version, str]],
) -> list[dict[str, Any]]:
    """The entries of `_containedType=contained` matches, each given as (container version,
    contained id): the contained resource, `_summary` and `_elements` applied to it, with the
    fullUrl `[base]/{container type}/{container id}#{contained id}` (search.html#contained)."""
    masking = Masking.of(ctx, services.protected_identity_units)
    out = []
    for version, id in matches:
        container = json.loads(masking.version(version).content or "null") or {}
        resource = next(
            (
                c
                for c in container.get("contained") or ()
                if isinstance(c, dict) and c.get("id") == id
            ),
            None,
        )
        if resource is None:  # the index and the content always agree; nothing to show else
            continue
        if query.summary in ("true", "text", "data"):
            resource = summary(services.definitions, resource, query.summary)
        elif query.elements:
            resource = elements(services.definitions, resource, query.elements)
        out.append(
            {
                "fullUrl": f"{ctx.base_url}/{version.resource_type}/{version.id}#{id}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    return out
