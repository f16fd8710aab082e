"""The facts the Swedish access rules read, kept as index rows of their own
(docs/access-control.md).

Whether a care unit has a care relationship with a patient (L1), and whether a patient has
consented to or blocked sharing (L7–L9), are read from the patient's Encounters, EpisodesOfCare
and Consents on every request. No standard search parameter says what the rules need (a
Consent's `provision.type` and its actors' roles are not searchable in R4), so the indexer writes
rows of table `access_fact` (migration 0017_access_rules) for them: in the same transaction as
the resource, by every path that indexes (writes, `flode load --fast`, `$import`, `$reindex`).
No search can name them.

Each row is keyed by the patient, so the rules check one patient by one index look-up
(`access_fact_patient`), however many patients a unit cares for:

- `_care-relation`: an Encounter planned, arrived, triaged, in progress or on leave, or
  finished (until its period ends), names its `serviceProvider`; an active EpisodeOfCare its
  `managingOrganization`, until its period ends.
- `_consent-permit`: an active Consent whose provision permits, for purpose TREAT, names each
  information recipient (actor role IRCP): the reading care provider.
- `_consent-deny`: an active Consent whose provision denies names each custodian (actor role
  CST) whose data is blocked: a care unit or a care provider.

An organization is named as `Organization/{id}` (a reference) or `{system}|{value}` (a logical
reference by identifier; the rules match the HSA-id system); a reference with both gives a row
for each. `low`/`high` is when the fact holds: a care relationship until its end (the rules add
the configured window), a consent or block during its `provision.period`, else always.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from flode.store.params import date, reference

CARE_RELATION = "_care-relation"
CONSENT_PERMIT = "_consent-permit"
CONSENT_DENY = "_consent-deny"

OPEN_ENCOUNTER = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
RECIPIENT = "IRCP"
CUSTODIAN = "CST"
TREATMENT = "TREAT"

TABLE = "access_fact"
COLUMNS = ("patient_id", "organization", "low", "high")
COLUMN_TYPES = ("text", "text", "timestamptz", "timestamptz")

Rows = dict[str, list[tuple[Any, ...]]]
Period = tuple[datetime, datetime]
ALWAYS: Period = (date.FIRST, date.LAST)


def rows(resource: Mapping[str, Any]) -> Rows:
    """The access rows of a resource (most resources have none)."""
    kind = resource.get("resourceType")
    found: list[tuple[Any, ...]] = []
    if kind == "Encounter":
        found = _relation(resource, "subject", "serviceProvider", _encounter_until(resource))
    elif kind == "EpisodeOfCare":
        until = _until(resource) if resource.get("status") == "active" else None
        found = _relation(resource, "patient", "managingOrganization", until)
    elif kind == "Consent" and resource.get("status") == "active":
        found = _consent(resource)
    return {TABLE: found} if found else {}


def _patient(value: Any) -> str | None:
    row = reference.row_of(value)
    return row[1] if row is not None and row[0] == "Patient" else None


def _organizations(value: Any) -> list[str]:
    """The names of the organization a Reference points to (see the module's docstring)."""
    row = reference.row_of(value)
    if row is None:
        return []
    kind, id, _, system, number = row
    names = [f"Organization/{id}"] if kind in (None, "Organization") and id else []
    if number is not None:
        names.append(f"{system or ''}|{number}")
    return names


def _until(resource: Mapping[str, Any]) -> Period:
    period = resource.get("period")
    end = date.rows([("Period", period)]) if isinstance(period, dict) else []
    return (date.FIRST, end[0][1]) if end else ALWAYS


def _encounter_until(resource: Mapping[str, Any]) -> Period | None:
    status = resource.get("status")
    if status in OPEN_ENCOUNTER:
        return ALWAYS
    if status == "finished":
        period = resource.get("period")
        found = date.rows([("Period", period)]) if isinstance(period, dict) else []
        # A finished encounter without an end gives no relationship: when did it finish?
        return (date.FIRST, found[0][1]) if found and found[0][1] != date.LAST else None
    return None


def _relation(
    resource: Mapping[str, Any], subject: str, organization: str, until: Period | None
) -> list[tuple[Any, ...]]:
    patient = _patient(resource.get(subject))
    if until is None or patient is None:
        return []
    return [
        (CARE_RELATION, patient, name, *until)
        for name in _organizations(resource.get(organization))
    ]


def _codes(concepts: Any) -> Iterator[tuple[Any, Any]]:
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict):
                yield coding.get("system"), coding.get("code")


def _consent(resource: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    provision = resource.get("provision")
    patient = _patient(resource.get("patient"))
    if not isinstance(provision, dict) or patient is None:
        return []
    kind = provision.get("type")
    if kind == "permit":
        param, role = CONSENT_PERMIT, RECIPIENT
        purposes = provision.get("purpose")
        if not any(
            c.get("system") == ACT_REASON and c.get("code") == TREATMENT
            for c in (purposes if isinstance(purposes, list) else [])
            if isinstance(c, dict)
        ):
            return []
    elif kind == "deny":
        param, role = CONSENT_DENY, CUSTODIAN
    else:
        return []
    period = provision.get("period")
    limited = date.rows([("Period", period)]) if isinstance(period, dict) else []
    during = limited[0] if limited else ALWAYS
    found: list[tuple[Any, ...]] = []
    actors = provision.get("actor")
    for actor in actors if isinstance(actors, list) else []:
        if not isinstance(actor, dict) or (PARTICIPATION, role) not in set(
            _codes(actor.get("role"))
        ):
            continue
        found.extend(
            (param, patient, name, *during) for name in _organizations(actor.get("reference"))
        )
    return found
