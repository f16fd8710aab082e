"""The CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html), generated from
what this server implements: every claim here is backed by a route and an interaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flode import __version__
from flode.config import Config
from flode.fhir.dates import format_instant
from flode.interactions.services import Services
from flode.store.criteria import SUPPORTED

_SEARCH_TYPES = {"_id": "token", "identifier": "token", "_lastUpdated": "date"}
_SEARCH_DOCS = {
    "_id": "The resource's logical id",
    "identifier": "A top-level identifier: code, system|code, |code or system|",
    "_lastUpdated": "When the current version was written (all date prefixes)",
}
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


def _resource(services: Services, resource_type: str) -> dict[str, Any]:
    params = [
        p
        for p in SUPPORTED
        if p != "identifier" or "identifier" in services.definitions.nodes[resource_type].properties
    ]
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
        "searchParam": [
            {
                "name": p,
                "definition": f"http://hl7.org/fhir/SearchParameter/Resource-{p.lstrip('_')}"
                if p.startswith("_")
                else f"http://hl7.org/fhir/SearchParameter/{resource_type}-identifier",
                "type": _SEARCH_TYPES[p],
                "documentation": _SEARCH_DOCS[p],
            }
            for p in params
        ],
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
                "resource": [
                    _resource(services, t) for t in sorted(services.definitions.resource_types)
                ],
                "interaction": [{"code": "history-system"}],
            }
        ],
    }
