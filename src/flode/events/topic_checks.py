"""Whether a SubscriptionTopic (the IG's R4 Basic) can be served, element by element of the R5
SubscriptionTopic it carries (https://hl7.org/fhir/R5/subscriptiontopic.html): `url`,
`resourceTrigger` (`resource`, `supportedInteraction`, `queryCriteria`, `fhirPathCriteria`) and
`canFilterBy`.

A topic an administrator writes is checked before it is stored (flode.events.writes); what the
database holds is checked again when the topics are read (flode.events.topic_store), so a topic
stored without checks (`flode load --fast`, `$import`) is left out rather than served wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flode.events.subscription import search_criteria
from flode.events.topics import (
    INTERACTIONS,
    elements,
    extension_parts,
    extension_values,
    resource_type_of,
    url_of,
)
from flode.fhir.errors import Issue
from flode.store.search import SearchCompiler

CORE = "http://hl7.org/fhir/StructureDefinition/"
RESULTS = ("test-passes", "test-fails")
# Parameters every type has that the registry does not list.
_COMMON = ("_id", "_lastUpdated")


def _where(element: str, n: int | None = None) -> str:
    return f"Basic.extension('SubscriptionTopic.{element}')" + ("" if n is None else f"[{n}]")


def _error(expression: str, text: str, code: str = "invalid") -> Issue:
    return Issue("error", code, f"SubscriptionTopic: {text}", (expression,))


def _resource_type(uri: Any, types: frozenset[str]) -> str | None:
    """The resource type a trigger or filter names (a bare type or its core profile URL)."""
    if not isinstance(uri, str) or ("/" in uri and not uri.startswith(CORE)):
        return None
    kind = resource_type_of(uri)
    return kind if kind in types else None


def problems(
    basic: Mapping[str, Any], compiler: SearchCompiler, types: frozenset[str]
) -> list[Issue]:
    """Every reason the topic cannot be served (none: it can)."""
    issues: list[Issue] = []
    url = url_of(basic)
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "urn:")):
        issues.append(
            _error(
                _where("url"),
                "a topic needs its canonical url (an absolute URI): Subscriptions name it in "
                "their criteria",
            )
        )
    extensions = elements(basic.get("extension"))
    triggers = extension_parts(extensions, "resourceTrigger")
    if not triggers:
        issues.append(
            _error(
                _where("resourceTrigger"),
                "a topic needs a resourceTrigger: the resource type (and interactions and "
                "criteria) whose changes are its events",
            )
        )
    kinds = [
        _trigger(p, _where("resourceTrigger", n), compiler, types, issues)
        for n, p in enumerate(triggers)
    ]
    # Which types the filters may name is known only when every trigger's type is.
    known = {k for k in kinds if k is not None} if kinds and None not in kinds else None
    for n, parts in enumerate(extension_parts(extensions, "canFilterBy")):
        _can_filter_by(parts, _where("canFilterBy", n), compiler, types, known, issues)
    return issues


def _trigger(
    parts: list[dict[str, Any]],
    where: str,
    compiler: SearchCompiler,
    types: frozenset[str],
    issues: list[Issue],
) -> str | None:
    """Check one resourceTrigger; its resource type if that is one."""
    resource = next(iter(extension_values(parts, "resource")), None)
    kind = _resource_type(resource, types)
    if kind is None or kind == "Subscription":
        issues.append(
            _error(
                f"{where}.extension('resource')",
                f"'{resource}' is not a resource type a topic can trigger on: give a FHIR R4 "
                f"type other than Subscription, e.g. '{CORE}Encounter'",
            )
        )
    for interaction in extension_values(parts, "supportedInteraction"):
        if interaction not in INTERACTIONS:
            issues.append(
                _error(
                    f"{where}.extension('supportedInteraction')",
                    f"interaction '{interaction}' is not one of {', '.join(INTERACTIONS)}",
                )
            )
    if extension_values(parts, "fhirPathCriteria"):
        issues.append(
            _error(
                f"{where}.extension('fhirPathCriteria')",
                "fhirPathCriteria are not supported: Flöde evaluates a topic's criteria as "
                "searches on the versions before and after the change and cannot evaluate "
                "FHIRPath with %previous and %current; write the rule as queryCriteria "
                "(previous, current)",
                "not-supported",
            )
        )
    for query in extension_parts(parts, "queryCriteria"):
        for name in ("previous", "current"):
            for text in extension_values(query, name):
                expression = f"{where}.extension('queryCriteria').extension('{name}')"
                problem = _criteria(compiler, kind, text) if kind is not None else None
                if problem is not None:
                    issues.append(_error(expression, f"queryCriteria {name} '{text}' {problem}"))
        for name in ("resultForCreate", "resultForDelete"):
            for value in extension_values(query, name):
                if value not in RESULTS:
                    issues.append(
                        _error(
                            f"{where}.extension('queryCriteria').extension('{name}')",
                            f"{name} must be one of {', '.join(RESULTS)}",
                        )
                    )
    return None if kind == "Subscription" else kind


def _criteria(compiler: SearchCompiler, kind: str, text: Any) -> str | None:
    """Why `text` is not a search of `kind` (written `status=active` or `Kind?status=active`)."""
    if not isinstance(text, str):
        return "must be a string"
    named, sep, query = text.partition("?")
    if not sep:
        named, query = "", text
    if named and named != kind:
        return f"must search {kind}, the trigger's resource type"
    parsed, problem = search_criteria(compiler, kind, query)
    return None if parsed is not None else problem


def _can_filter_by(
    parts: list[dict[str, Any]],
    where: str,
    compiler: SearchCompiler,
    types: frozenset[str],
    kinds: set[str] | None,
    issues: list[Issue],
) -> None:
    resource = next(iter(extension_values(parts, "resource")), None)
    kind = _resource_type(resource, types)
    if kinds is None:
        return
    if kind is None or kind not in kinds:
        issues.append(
            _error(
                f"{where}.extension('resource')",
                f"canFilterBy resource '{resource}' must be the resource type of one of the "
                f"topic's triggers ({', '.join(sorted(kinds)) or 'none'})",
            )
        )
        return
    for parameter in extension_values(parts, "filterParameter") or [None]:
        if not isinstance(parameter, str) or (
            parameter not in _COMMON and compiler.registry.get(kind, parameter) is None
        ):
            issues.append(
                _error(
                    f"{where}.extension('filterParameter')",
                    f"canFilterBy parameter '{parameter}' is not a search parameter of {kind}",
                )
            )
