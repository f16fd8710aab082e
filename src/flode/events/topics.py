"""The SubscriptionTopics Flöde ships, in the form the R4 Subscriptions Backport IG gives them
in R4: `Basic` resources carrying the R5 SubscriptionTopic as cross-version extensions
(https://hl7.org/fhir/uv/subscriptions-backport/ — "Backported SubscriptionTopic: R4").

Each topic is written once as data (`_DEFINITIONS`), published as a Basic resource, and read
back from that Basic into the `Topic` the matcher evaluates: what a client reads is what runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOPIC_BASE = "http://flode.example.org/SubscriptionTopic/"
_R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
_R4B = "http://hl7.org/fhir/4.3/StructureDefinition/extension-SubscriptionTopic."
INTERACTIONS = ("create", "update", "delete")

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
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]
        },
    }


def _values(extensions: Iterable[Mapping[str, Any]], url: str) -> list[Any]:
    found = []
    for extension in extensions:
        if extension.get("url") == url:
            found.append(next(v for k, v in extension.items() if k.startswith("value")))
    return found


def _parts(extensions: Iterable[Mapping[str, Any]], url: str) -> list[list[dict[str, Any]]]:
    return [e.get("extension", []) for e in extensions if e.get("url") == url]


def _one(extensions: Iterable[Mapping[str, Any]], url: str, default: Any = None) -> Any:
    values = _values(extensions, url)
    return values[0] if values else default


def topic_of(basic: Mapping[str, Any]) -> Topic:
    """Read a backported SubscriptionTopic (Basic) into what the matcher evaluates."""
    extensions = basic.get("extension", [])
    triggers = []
    for parts in _parts(extensions, f"{_R4B}resourceTrigger"):
        resource = str(_one(parts, "resource"))
        criteria = None
        for query in _parts(parts, "queryCriteria"):
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
                resource.rsplit("/", 1)[-1],
                tuple(_values(parts, "supportedInteraction")) or INTERACTIONS,
                criteria,
            )
        )
    filters: dict[str, list[str]] = {}
    for parts in _parts(extensions, f"{_R4B}canFilterBy"):
        filters.setdefault(str(_one(parts, "resource")), []).append(
            str(_one(parts, "filterParameter"))
        )
    return Topic(
        url=str(_one(extensions, f"{_R5}url")),
        name=str(_one(extensions, f"{_R5}name", "")),
        title=str(_one(extensions, f"{_R5}title", "")),
        description=str(_one(extensions, f"{_R5}description", "")),
        triggers=tuple(triggers),
        filters={k: tuple(v) for k, v in filters.items()},
    )


class Topics:
    """The topics this server offers, by canonical URL. Built once at start-up."""

    def __init__(self, resources: Sequence[Mapping[str, Any]]) -> None:
        self.resources = list(resources)
        self.by_url = {topic.url: topic for topic in map(topic_of, self.resources)}

    @classmethod
    def builtin(cls) -> Topics:
        return cls([basic_resource(*definition) for definition in _DEFINITIONS])

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
