"""The SubscriptionTopics Flöde ships, in the form the R4 Subscriptions Backport IG gives them
in R4: `Basic` resources carrying the R5 SubscriptionTopic as cross-version extensions
(https://hl7.org/fhir/uv/subscriptions-backport/ — "Backported SubscriptionTopic: R4").

Each shipped topic is written once as data (`_DEFINITIONS`), stored as a Basic resource at
start-up (flode.events.topic_store), and read back from that Basic into the `Topic` the matcher
evaluates: what a client reads is what runs. Administrators add topics the same way, as Basic
resources (checked by flode.events.topic_checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOPIC_BASE = "http://flode.example.org/SubscriptionTopic/"
_R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
_R4B = "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic."
INTERACTIONS = ("create", "update", "delete")
TYPES_SYSTEM = "http://hl7.org/fhir/fhir-types"
TOPIC_CODE = "SubscriptionTopic"
TOPIC_SEARCH = ("code", f"{TYPES_SYSTEM}|{TOPIC_CODE}")
"""The search that finds the topics: `Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic`."""

_ENCOUNTER_CLASS = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_INPATIENT = ",".join(f"{_ENCOUNTER_CLASS}|{code}" for code in ("IMP", "ACUTE", "NONAC"))
_OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"


@dataclass(frozen=True, slots=True)
class QueryCriteria:
    """SubscriptionTopic.resourceTrigger.queryCriteria: search queries over the version before
    (`previous`) and after (`current`) the change."""

    previous: str | None = None
    current: str | None = None
    result_for_create: str = "test-passes"
    """What `previous` counts as when there is no previous version."""
    result_for_delete: str = "test-fails"
    """What `current` counts as when the change is a deletion."""
    require_both: bool = False


@dataclass(frozen=True, slots=True)
class Trigger:
    description: str
    resource_type: str
    interactions: tuple[str, ...]
    criteria: QueryCriteria | None = None


@dataclass(frozen=True, slots=True)
class Topic:
    url: str
    name: str
    title: str
    description: str
    triggers: tuple[Trigger, ...]
    filters: Mapping[str, tuple[str, ...]]
    """canFilterBy: the filter parameters each resource type documents."""

    @property
    def resource_types(self) -> frozenset[str]:
        return frozenset(t.resource_type for t in self.triggers)


def _becomes(
    resource_type: str, description: str, current: str, previous: str, *filters: str
) -> tuple[Trigger, tuple[str, ...]]:
    """A trigger on create or update whose resource matches `current` now and did not
    match `previous` before (or did not exist)."""
    criteria = QueryCriteria(previous=previous, current=current, require_both=True)
    return Trigger(description, resource_type, ("create", "update"), criteria), filters


_DEFINITIONS: tuple[tuple[str, str, str, Sequence[tuple[Trigger, tuple[str, ...]]]], ...] = (
    (
        "encounter-start",
        "Encounter started",
        "An encounter begins: its status becomes in-progress.",
        [
            _becomes(
                "Encounter",
                "An Encounter is created or updated with status in-progress, having had another.",
                "status=in-progress",
                "status:not=in-progress",
                "patient",
                "class",
                "service-provider",
                "location",
            )
        ],
    ),
    (
        "encounter-end",
        "Encounter finished",
        "An encounter ends: its status becomes finished.",
        [
            _becomes(
                "Encounter",
                "An Encounter is created or updated with status finished, having had another.",
                "status=finished",
                "status:not=finished",
                "patient",
                "class",
                "service-provider",
                "location",
            )
        ],
    ),
    (
        "patient-admission",
        "Patient admitted",
        "A patient is admitted: an inpatient encounter (class IMP, ACUTE or NONAC) begins.",
        [
            _becomes(
                "Encounter",
                "An inpatient Encounter's status becomes in-progress.",
                f"status=in-progress&class={_INPATIENT}",
                "status:not=in-progress",
                "patient",
                "service-provider",
                "location",
            )
        ],
    ),
    (
        "patient-discharge",
        "Patient discharged",
        "A patient is discharged: an inpatient encounter (class IMP, ACUTE or NONAC) ends.",
        [
            _becomes(
                "Encounter",
                "An inpatient Encounter's status becomes finished.",
                f"status=finished&class={_INPATIENT}",
                "status:not=finished",
                "patient",
                "service-provider",
                "location",
            )
        ],
    ),
    (
        "lab-result-final",
        "Laboratory result final",
        "A laboratory result becomes final: an Observation of category laboratory or a "
        "DiagnosticReport of category LAB gets status final.",
        [
            _becomes(
                "Observation",
                "A laboratory Observation's status becomes final.",
                f"status=final&category={_OBSERVATION_CATEGORY}|laboratory",
                "status:not=final",
                "patient",
                "code",
                "performer",
            ),
            _becomes(
                "DiagnosticReport",
                "A laboratory DiagnosticReport's status becomes final.",
                f"status=final&category={_V2_0074}|LAB",
                "status:not=final",
                "patient",
                "code",
                "performer",
            ),
        ],
    ),
    (
        "referral-new",
        "New referral",
        "A referral or order for a service becomes active (a ServiceRequest).",
        [
            _becomes(
                "ServiceRequest",
                "A ServiceRequest's status becomes active.",
                "status=active",
                "status:not=active",
                "patient",
                "performer",
                "category",
                "code",
            )
        ],
    ),
    (
        "lab-order",
        "New laboratory order",
        "A laboratory order becomes active (a ServiceRequest of category laboratory procedure).",
        [
            _becomes(
                "ServiceRequest",
                "A laboratory ServiceRequest's status becomes active.",
                "status=active&category=http://snomed.info/sct|108252007",
                "status:not=active",
                "patient",
                "performer",
                "code",
            )
        ],
    ),
    (
        "medication-order-new",
        "New medication order",
        "A medication order becomes active (a MedicationRequest with intent order).",
        [
            _becomes(
                "MedicationRequest",
                "A MedicationRequest with intent order becomes active.",
                "status=active&intent=order",
                "status:not=active",
                "patient",
                "requester",
                "code",
            )
        ],
    ),
    (
        "appointment-booked",
        "Appointment booked",
        "An appointment is booked: its status becomes booked.",
        [
            _becomes(
                "Appointment",
                "An Appointment's status becomes booked.",
                "status=booked",
                "status:not=booked",
                "patient",
                "actor",
                "service-type",
            )
        ],
    ),
    (
        "appointment-cancelled",
        "Appointment cancelled",
        "An appointment is cancelled: its status becomes cancelled.",
        [
            _becomes(
                "Appointment",
                "An Appointment's status becomes cancelled.",
                "status=cancelled",
                "status:not=cancelled",
                "patient",
                "actor",
                "service-type",
            )
        ],
    ),
    (
        "patient-data-changed",
        "Patient data changed",
        "A Patient resource is created, updated or deleted.",
        [
            (
                Trigger(
                    "Any change of a Patient resource.",
                    "Patient",
                    INTERACTIONS,
                ),
                ("_id", "identifier", "organization", "general-practitioner"),
            )
        ],
    ),
)


def shipped() -> list[dict[str, Any]]:
    """The topics Flöde ships, as the Basic resources it stores at start-up (id: the name)."""
    return [basic_resource(*definition) for definition in _DEFINITIONS]


def _ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


def _trigger_extension(trigger: Trigger) -> dict[str, Any]:
    parts = [
        _ext("description", valueMarkdown=trigger.description),
        _ext(
            "resource",
            valueUri=f"http://hl7.org/fhir/StructureDefinition/{trigger.resource_type}",
        ),
        *(_ext("supportedInteraction", valueCode=i) for i in trigger.interactions),
    ]
    c = trigger.criteria
    if c is not None:
        query: list[dict[str, Any]] = []
        if c.previous is not None:
            query.append(_ext("previous", valueString=c.previous))
            query.append(_ext("resultForCreate", valueCode=c.result_for_create))
        if c.current is not None:
            query.append(_ext("current", valueString=c.current))
            query.append(_ext("resultForDelete", valueCode=c.result_for_delete))
        query.append(_ext("requireBoth", valueBoolean=c.require_both))
        parts.append(_ext("queryCriteria", extension=query))
    return _ext(f"{_R4B}resourceTrigger", extension=parts)


def basic_resource(
    name: str, title: str, description: str, triggers: Iterable[tuple[Trigger, tuple[str, ...]]]
) -> dict[str, Any]:
    """A topic as the IG's R4 Basic resource."""
    extensions = [
        _ext(f"{_R5}url", valueUri=TOPIC_BASE + name),
        _ext(f"{_R5}version", valueString="1"),
        _ext(f"{_R5}name", valueString="".join(w.capitalize() for w in name.split("-"))),
        _ext(f"{_R5}title", valueString=title),
        _ext(f"{_R5}description", valueMarkdown=description),
    ]
    filters = []
    for trigger, parameters in triggers:
        extensions.append(_trigger_extension(trigger))
        for parameter in parameters:
            filters.append(
                _ext(
                    f"{_R4B}canFilterBy",
                    extension=[
                        _ext("resource", valueUri=trigger.resource_type),
                        _ext("filterParameter", valueString=parameter),
                    ],
                )
            )
    return {
        "resourceType": "Basic",
        "id": name,
        "extension": extensions + filters,
        "modifierExtension": [_ext(f"{_R5}status", valueCode="active")],
        "code": {"coding": [{"system": TYPES_SYSTEM, "code": TOPIC_CODE}]},
    }


def extension_values(extensions: Iterable[Mapping[str, Any]], url: str) -> list[Any]:
    found = []
    for extension in extensions:
        if extension.get("url") == url:
            found.append(next((v for k, v in extension.items() if k.startswith("value")), None))
    return found


def extension_parts(
    extensions: Iterable[Mapping[str, Any]], url: str
) -> list[list[dict[str, Any]]]:
    return [e.get("extension", []) for e in extensions if e.get("url") == url]


def _one(extensions: Iterable[Mapping[str, Any]], url: str, default: Any = None) -> Any:
    values = extension_values(extensions, url)
    return values[0] if values else default


def elements(extensions: Any) -> list[dict[str, Any]]:
    """The cross-version extensions of a Basic by element name (`url`, `resourceTrigger`, …):
    the IG's examples use both the R5 (5.0) and the R4B (4.3) extension URLs."""
    found = []
    for extension in extensions if isinstance(extensions, list) else []:
        if isinstance(extension, dict):
            url = str(extension.get("url", ""))
            for prefix in (_R5, _R4B):
                if url.startswith(prefix):
                    url = url.removeprefix(prefix)
            found.append({**extension, "url": url})
    return found


def is_topic(resource: Mapping[str, Any] | None) -> bool:
    """Whether a resource is a backported SubscriptionTopic (a Basic with the IG's code)."""
    if resource is None or resource.get("resourceType") != "Basic":
        return False
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, Mapping) else None
    return any(
        isinstance(c, Mapping) and c.get("system") == TYPES_SYSTEM and c.get("code") == TOPIC_CODE
        for c in (codings if isinstance(codings, list) else [])
    )


def status_of(basic: Mapping[str, Any]) -> Any:
    """The topic's R5 status (a modifier extension in the IG; an extension is read too)."""
    found = elements(basic.get("modifierExtension")) + elements(basic.get("extension"))
    return _one(found, "status")


def url_of(basic: Mapping[str, Any]) -> Any:
    return _one(elements(basic.get("extension")), "url")


def served_url(resource: Mapping[str, Any] | None) -> str | None:
    """The canonical URL a resource offers as a topic: an active topic's, else None."""
    if not is_topic(resource) or resource is None or status_of(resource) != "active":
        return None
    url = url_of(resource)
    return url if isinstance(url, str) and url else None


def resource_type_of(uri: Any) -> str:
    """`Encounter` from `http://hl7.org/fhir/StructureDefinition/Encounter` (or itself)."""
    return str(uri).rsplit("/", 1)[-1]


def topic_of(basic: Mapping[str, Any]) -> Topic:
    """Read a backported SubscriptionTopic (Basic) into what the matcher evaluates."""
    extensions = elements(basic.get("extension"))
    triggers = []
    for parts in extension_parts(extensions, "resourceTrigger"):
        criteria = None
        for query in extension_parts(parts, "queryCriteria"):
            criteria = QueryCriteria(
                previous=_one(query, "previous"),
                current=_one(query, "current"),
                result_for_create=_one(query, "resultForCreate", "test-passes"),
                result_for_delete=_one(query, "resultForDelete", "test-fails"),
                require_both=bool(_one(query, "requireBoth", False)),
            )
        triggers.append(
            Trigger(
                str(_one(parts, "description", "")),
                resource_type_of(_one(parts, "resource")),
                tuple(extension_values(parts, "supportedInteraction")) or INTERACTIONS,
                criteria,
            )
        )
    filters: dict[str, list[str]] = {}
    for parts in extension_parts(extensions, "canFilterBy"):
        filters.setdefault(resource_type_of(_one(parts, "resource")), []).append(
            str(_one(parts, "filterParameter"))
        )
    return Topic(
        url=str(_one(extensions, "url")),
        name=str(_one(extensions, "name", "")),
        title=str(_one(extensions, "title", "")),
        description=str(_one(extensions, "description", "")),
        triggers=tuple(triggers),
        filters={k: tuple(v) for k, v in filters.items()},
    )


class Topics:
    """The topics this server offers, by canonical URL: built once at start-up and shared by
    reference (the Subscription checks, the matcher, delivery, the CapabilityStatement), so a
    change of the stored topics is made in place (`replace`)."""

    def __init__(self, resources: Sequence[Mapping[str, Any]]) -> None:
        self.generation = 0
        """Grows with every `replace` (the CapabilityStatement and cached reads follow it)."""
        self.replace(resources)

    @classmethod
    def builtin(cls) -> Topics:
        return cls(shipped())

    def replace(self, resources: Sequence[Mapping[str, Any]]) -> None:
        """Offer these topics from now on instead (each a servable, active topic)."""
        self.resources = list(resources)
        self.by_url = {topic.url: topic for topic in map(topic_of, self.resources)}
        self.generation += 1

    def get(self, url: str) -> Topic | None:
        return self.by_url.get(url.split("|", 1)[0])

    def __iter__(self) -> Any:
        return iter(self.by_url.values())

    @property
    def urls(self) -> list[str]:
        return sorted(self.by_url)

    def triggers_for(self, resource_type: str) -> list[tuple[Topic, Trigger]]:
        return [
            (topic, trigger)
            for topic in self.by_url.values()
            for trigger in topic.triggers
            if trigger.resource_type == resource_type
        ]
