"""The CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html), generated from
what this server implements: every claim here is backed by a route and an interaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flode import __version__
from flode.config import Config
from flode.fhir.dates import format_instant
from flode.interactions.services import Services
from flode.store.indexer import MODULES, NOT_INDEXED, ON_RESOURCE

_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
_STARTED = format_instant(datetime.now(UTC))


def _search_params(services: Services, resource_type: str) -> list[dict[str, Any]]:
    """Every parameter the search compiler answers for the type, as the registry defines it."""
    return [
        {"name": code, "definition": param.url, "type": param.type}
        for code, param in sorted(services.search.registry.for_type(resource_type).items())
        if param.compiled is not None
        and code not in NOT_INDEXED
        and (param.type in MODULES or code in ON_RESOURCE)
    ]


def _unsupported(services: Services) -> str:
    registry = services.search.registry
    found = {url.rsplit("/", 1)[-1]: reason for url, reason in registry.unsupported}
    for code in sorted(NOT_INDEXED):
        found[code] = "needs a full-text index"
    listed = "; ".join(f"{name} ({reason})" for name, reason in sorted(found.items()))
    return f"Search parameters defined by FHIR R4 that this server does not support: {listed}."


def _resource(services: Services, resource_type: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in _INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",  # If-None-Match and If-Modified-Since
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchParam": _search_params(services, resource_type),
    }


def capability_statement(services: Services, config: Config) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _STARTED,
        "publisher": "Flöde",
        "kind": "instance",
        "software": {"name": "Flöde", "version": __version__},
        "implementation": {
            "description": "Flöde FHIR R4 server",
            **({"url": config.public_base_url} if config.public_base_url else {}),
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": _unsupported(services),
                "resource": [
                    _resource(services, t) for t in sorted(services.definitions.resource_types)
                ],
                "interaction": [{"code": "history-system"}],
            }
        ],
    }
