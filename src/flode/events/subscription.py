"""A Subscription resource in the R4 Subscriptions Backport IG's profile, read into what
delivery needs, with every reason it cannot be served
(https://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition-backport-subscription.html).

- `criteria`: the canonical URL of a topic this server offers (flode.events.topics).
- `_criteria.extension[backport-filter-criteria]`: filters, each a search on one of the
  topic's resource types, e.g. `Encounter?patient=Patient/123`.
- `channel.type`: `rest-hook` (with `endpoint` and `header`) or `websocket`.
- `channel._payload.extension[backport-payload-content]`: `empty`, `id-only` (default) or
  `full-resource`; `channel.extension`: `backport-heartbeat-period`, `backport-timeout`,
  `backport-max-count`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from flode.events.endpoints import EndpointPolicy
from flode.events.topics import Topic, Topics
from flode.fhir.dates import parse_range
from flode.fhir.errors import FhirError, Issue
from flode.fhir.search_query import RESULT, SearchQuery, parse
from flode.store.search import SearchCompiler

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER = f"{BACKPORT}backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}backport-payload-content"
HEARTBEAT = f"{BACKPORT}backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}backport-timeout"
MAX_COUNT = f"{BACKPORT}backport-max-count"
PROFILE = f"{BACKPORT}backport-subscription"

CHANNELS = ("rest-hook", "websocket")
CONTENTS = ("empty", "id-only", "full-resource")
MIME_TYPES = ("application/fhir+json", "application/json")
STATUSES = ("requested", "active", "error", "off")
MAX_TIMEOUT = 120
MAX_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class Filter:
    resource_type: str
    query: SearchQuery
    text: str


@dataclass(frozen=True, slots=True)
class Spec:
    """What a Subscription asks for."""

    id: str
    status: str
    topic: Topic
    filters: tuple[Filter, ...]
    channel: str
    endpoint: str | None
    headers: tuple[tuple[str, str], ...]
    content: str
    mime_type: str
    heartbeat: int | None
    timeout: int
    max_count: int
    end: datetime | None

    def filters_for(self, resource_type: str) -> list[Filter]:
        return [f for f in self.filters if f.resource_type == resource_type]


def _extension(element: Any, url: str) -> list[Any]:
    if not isinstance(element, Mapping):
        return []
    return [
        next((v for k, v in e.items() if k.startswith("value")), None)
        for e in element.get("extension", [])
        if isinstance(e, Mapping) and e.get("url") == url
    ]


def _error(expression: str, text: str) -> Issue:
    return Issue("error", "invalid", f"Subscription: {text}", (expression,))


def _filter(raw: Any, topic: Topic, compiler: SearchCompiler, issues: list[Issue]) -> Filter | None:
    where = "Subscription.criteria.extension('backport-filter-criteria')"
    if not isinstance(raw, str) or not raw.strip():
        issues.append(_error(where, "a filter must be a string like 'Encounter?patient=123'"))
        return None
    resource_type, sep, query = raw.strip().partition("?")
    if not sep:
        # The IG's first form: `Encounter.patient=Patient/123`.
        resource_type, sep, query = raw.strip().partition(".")
    if not sep or resource_type not in topic.resource_types:
        issues.append(
            _error(
                where,
                f"filter '{raw}' must search one of the topic's resource types "
                f"({', '.join(sorted(topic.resource_types))}), e.g. "
                f"'{sorted(topic.resource_types)[0]}?patient=Patient/123'",
            )
        )
        return None
    parsed, problem = search_criteria(compiler, resource_type, query)
    if parsed is None:
        issues.append(_error(where, f"filter '{raw}' {problem}"))
        return None
    return Filter(resource_type, parsed, raw)


def search_criteria(
    compiler: SearchCompiler, resource_type: str, query: str
) -> tuple[SearchQuery | None, str]:
    """The criteria `query` (`name=value&…`) of a search of `resource_type`, or None and why
    they cannot be one (a Subscription's filters, a topic's query criteria)."""
    params = parse_qsl(query, keep_blank_values=True)
    extra = [name for name, _ in params if name.split(":")[0] in RESULT or name.startswith("_inc")]
    if not params or extra:
        return None, "must hold search criteria only"
    try:
        parsed = parse(params)
        compiled = compiler.compile(resource_type, parsed)
    except FhirError as exc:
        return None, f"is not a search of {resource_type}: {exc.issues[0].diagnostics}"
    if compiled.unknown:
        return None, (
            f"names search parameters {resource_type} does not have: {', '.join(compiled.unknown)}"
        )
    return parsed, ""


def _number(
    channel: Mapping[str, Any], url: str, name: str, issues: list[Issue], low: int, high: int
) -> int | None:
    values = _extension(channel, url)
    if not values:
        return None
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        issues.append(
            _error(
                f"Subscription.channel.extension('{url.rsplit('/', 1)[-1]}')",
                f"{name} must be a whole number from {low} to {high}",
            )
        )
        return None
    return value


def read_subscription(
    resource: Mapping[str, Any],
    topics: Topics,
    compiler: SearchCompiler,
    endpoints: EndpointPolicy,
) -> tuple[Spec | None, list[Issue]]:
    """The Subscription's request, or the issues that make it one this server cannot serve."""
    issues: list[Issue] = []
    status = resource.get("status")
    if status not in STATUSES:
        issues.append(_error("Subscription.status", f"status must be one of {STATUSES}"))
    criteria = resource.get("criteria")
    topic = topics.get(criteria) if isinstance(criteria, str) else None
    if topic is None:
        issues.append(
            _error(
                "Subscription.criteria",
                f"criteria must be the canonical URL of a SubscriptionTopic this server offers "
                f"(not '{criteria}'): {', '.join(topics.urls)}",
            )
        )
    filters: list[Filter] = []
    if topic is not None:
        for raw in _extension(resource.get("_criteria"), FILTER):
            found = _filter(raw, topic, compiler, issues)
            if found is not None:
                filters.append(found)
    channel = resource.get("channel")
    channel = channel if isinstance(channel, Mapping) else {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        issues.append(
            _error("Subscription.channel.type", f"channel type must be one of {CHANNELS}")
        )
    endpoint = channel.get("endpoint")
    if kind == "rest-hook":
        if not isinstance(endpoint, str) or not endpoint:
            issues.append(_error("Subscription.channel.endpoint", "a rest-hook needs an endpoint"))
        elif (reason := endpoints.check(endpoint)) is not None:
            issues.append(_error("Subscription.channel.endpoint", reason))
    headers = []
    for n, header in enumerate(channel.get("header", [])):
        name, sep, value = str(header).partition(":")
        if not sep or not name.strip() or any(c in str(header) for c in "\r\n"):
            issues.append(
                _error(f"Subscription.channel.header[{n}]", "a header must be 'Name: value'")
            )
        else:
            headers.append((name.strip(), value.strip()))
    mime_type = channel.get("payload", "application/fhir+json")
    if mime_type not in MIME_TYPES:
        issues.append(
            _error("Subscription.channel.payload", f"payload must be one of {MIME_TYPES}")
        )
    contents = _extension(channel.get("_payload"), PAYLOAD_CONTENT)
    content = contents[0] if contents else "id-only"
    if content not in CONTENTS:
        issues.append(
            _error(
                "Subscription.channel.payload.extension('backport-payload-content')",
                f"payload content must be one of {CONTENTS}",
            )
        )
    heartbeat = _number(channel, HEARTBEAT, "the heartbeat period", issues, 1, 86_400)
    timeout = _number(channel, TIMEOUT, "the timeout", issues, 1, MAX_TIMEOUT)
    max_count = _number(channel, MAX_COUNT, "the max count", issues, 1, MAX_EVENTS)
    end = None
    if isinstance(resource.get("end"), str):
        try:
            end = parse_range(resource["end"])[0]
        except (ValueError, FhirError):
            issues.append(_error("Subscription.end", "end must be an instant"))
    if issues or topic is None:
        return None, issues
    return (
        Spec(
            id=str(resource.get("id", "")),
            status=str(status),
            topic=topic,
            filters=tuple(filters),
            channel=str(kind),
            endpoint=endpoint if isinstance(endpoint, str) else None,
            headers=tuple(headers),
            content=str(content),
            mime_type=str(mime_type),
            heartbeat=heartbeat,
            timeout=timeout or 10,
            max_count=max_count or 100,
            end=end,
        ),
        [],
    )
