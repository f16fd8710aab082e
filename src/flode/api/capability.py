"""The CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html), generated from
what this server implements: every claim here is backed by a route and an interaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flode import __version__
from flode.api import module_parameters
from flode.audit import query as audit_query
from flode.config import Config
from flode.events.capability import subscription_capability
from flode.fhir.dates import format_instant
from flode.interactions.services import Services
from flode.store.indexer import FULL_TEXT, MODULES, NOT_INDEXED, ON_RESOURCE

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
# Interactions on the base URL (POST [base] with a transaction or batch Bundle, GET [base]/_history)
_SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
# Answered by the search compiler beside the registry's parameters.
_LIST = {
    "name": "_list",
    "type": "special",
    "documentation": "The resources a List has as entry.item: _list=[List id]",
}
# Official parameters without a usable expression that Flöde answers from its full-text index.
_FULL_TEXT_URLS = frozenset(
    {
        "http://hl7.org/fhir/SearchParameter/Resource-content",
        "http://hl7.org/fhir/SearchParameter/DomainResource-text",
    }
)
_STARTED = format_instant(datetime.now(UTC))
# Operations on the base URL and on Patient and Group (flode.api.bulk).
_BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
_OPERATIONS = (
    ("export", f"{_BULK}/export"),
    ("patient-export", f"{_BULK}/patient-export"),
    ("group-export", f"{_BULK}/group-export"),
    # Bulk Data import (docs/bulk-data.md): no OperationDefinition is published for it yet.
    ("import", "http://flode.example.org/OperationDefinition/import"),
    ("everything", "http://hl7.org/fhir/OperationDefinition/Patient-everything"),
    ("log-extract", "http://flode.example.org/OperationDefinition/Patient-log-extract"),
    *audit_query.OPERATIONS,  # systematic log review (docs/audit.md)
    *module_parameters.OPERATIONS,  # the module registry, for the administrator
)


def _search_params(services: Services, resource_type: str) -> list[dict[str, Any]]:
    """Every parameter the search compiler answers for the type, as the registry defines it."""
    found = [
        {"name": code, "definition": param.url, "type": param.type}
        for code, param in sorted(services.search.registry.for_type(resource_type).items())
        if code in FULL_TEXT
        or (
            param.compiled is not None
            and code not in NOT_INDEXED
            and (param.type in MODULES or code in ON_RESOURCE)
        )
    ]
    return [*found, _LIST]


def _includes(services: Services, resource_type: str) -> list[str]:
    """`_include` values: the type's reference parameters, and `*`."""
    registry = services.search.registry
    codes = [c for c, p in registry.for_type(resource_type).items() if p.type == "reference"]
    return [*(f"{resource_type}:{code}" for code in sorted(codes)), "*"]


def _revincludes(services: Services) -> dict[str, list[str]]:
    """`_revinclude` values per target type: the reference parameters that can point at it."""
    found: dict[str, list[str]] = {}
    registry = services.search.registry
    for source in sorted(services.definitions.resource_types):
        for code, param in sorted(registry.for_type(source).items()):
            if param.type != "reference":
                continue
            for target in param.targets or services.definitions.resource_types:
                found.setdefault(target, []).append(f"{source}:{code}")
    return found


def _unsupported(services: Services) -> str:
    registry = services.search.registry
    found = {
        url.rsplit("/", 1)[-1]: reason
        for url, reason in registry.unsupported
        if url not in _FULL_TEXT_URLS
    }
    for code in sorted(NOT_INDEXED):
        found[code] = "not indexed"
    listed = "; ".join(f"{name} ({reason})" for name, reason in sorted(found.items()))
    return f"Search parameters defined by FHIR R4 that this server does not support: {listed}."


def _resource(services: Services, resource_type: str, revincludes: list[str]) -> dict[str, Any]:
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
        "searchInclude": _includes(services, resource_type),
        "searchRevInclude": [*revincludes, "*"],
        "searchParam": _search_params(services, resource_type),
        **(
            subscription_capability(services.events.topics)
            if resource_type == "Subscription"
            else {}
        ),
    }


def _security(root: str) -> dict[str, Any]:
    """SMART on FHIR: where a client gets its tokens (smart-app-launch, conformance)."""
    auth = f"{root}/auth"
    uris = [
        ("authorize", f"{auth}/authorize"),
        ("token", f"{auth}/token"),
        ("introspect", f"{auth}/introspect"),
        ("revoke", f"{auth}/revoke"),
    ]
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": name, "valueUri": uri} for name, uri in uris],
            }
        ],
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "description": "Every request but this CapabilityStatement needs a SMART on FHIR access "
        "token; see .well-known/smart-configuration",
    }


def capability_statement(services: Services, config: Config, root: str) -> dict[str, Any]:
    """The statement for the server whose root URL (scheme and host) is `root`."""
    revincludes = _revincludes(services)
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
                **({} if config.insecure_dev else {"security": _security(root)}),
                "resource": [
                    _resource(services, t, revincludes.get(t, []))
                    if t != "AuditEvent"
                    else audit_query.capability()  # the access log (docs/audit.md)
                    for t in sorted(services.definitions.resource_types)
                ],
                "interaction": [{"code": code} for code in _SYSTEM_INTERACTIONS],
                "operation": [{"name": n, "definition": d} for n, d in _OPERATIONS],
            }
        ],
    }
