"""The facts the Swedish access rules read, kept as index rows of their own
(docs/access-control.md).

Whether a care unit has a care relationship with a patient (L1), and whether a patient has
consented to or blocked sharing (L7–L9), are read from the patient's Encounters, EpisodesOfCare
and Consents on every request. No standard search parameter says what the rules need (a
Consent's `provision.type` and its actors' roles are not searchable in R4), so the indexer adds
rows under parameters of Flöde's own, whose names start with `_` and a letter no FHIR parameter
uses. They are written in the same transaction as the resource, by every path that indexes
(writes, `flode load --fast`, `$reindex`), and no search can name them.

- `_care-relation` (search_reference + search_date): an Encounter planned, arrived, triaged,
  in progress or on leave, or finished (until its period ends), names its `serviceProvider`; an
  active EpisodeOfCare its `managingOrganization`, until its period ends. The date row is the
  time the relationship lasts; the rules add the configured window after a finished encounter.
- `_consent-permit` (search_reference): an active Consent whose provision permits, for purpose
  TREAT, the information recipient (actor role IRCP) it names: the reading care provider.
- `_consent-deny` (search_reference): an active Consent whose provision denies: the custodian
  (actor role CST) whose data is blocked, a care unit or a care provider.

A consent or block limited in time (`provision.period`) also gets a `search_date` row under its
parameter: the rules count it only while `now()` lies in that period (`in_force`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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

Rows = dict[str, list[tuple[Any, ...]]]


def rows(resource: Mapping[str, Any]) -> Rows:
    """The access rows of a resource (most resources have none)."""
    kind = resource.get("resourceType")
    if kind == "Encounter":
        return _relation(resource.get("serviceProvider"), _encounter_until(resource))
    if kind == "EpisodeOfCare":
        until = _until(resource) if resource.get("status") == "active" else None
        return _relation(resource.get("managingOrganization"), until)
    if kind == "Consent" and resource.get("status") == "active":
        return _consent(resource)
    return {}


def _until(resource: Mapping[str, Any]) -> date.DateRow | None:
    period = resource.get("period")
    end = date.rows([("Period", period)]) if isinstance(period, dict) else []
    return (date.FIRST, end[0][1]) if end else (date.FIRST, date.LAST)


def _encounter_until(resource: Mapping[str, Any]) -> date.DateRow | None:
    status = resource.get("status")
    if status in OPEN_ENCOUNTER:
        return date.FIRST, date.LAST
    if status == "finished":
        period = resource.get("period")
        found = date.rows([("Period", period)]) if isinstance(period, dict) else []
        # A finished encounter without an end gives no relationship: when did it finish?
        return (date.FIRST, found[0][1]) if found and found[0][1] != date.LAST else None
    return None


def _relation(organization: Any, until: date.DateRow | None) -> Rows:
    row = reference.row_of(organization)
    if until is None or row is None:
        return {}
    return {
        reference.TABLE: [(CARE_RELATION, *row)],
        date.TABLE: [(CARE_RELATION, *until)],
    }


def _codes(concepts: Any) -> Iterator[tuple[Any, Any]]:
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict):
                yield coding.get("system"), coding.get("code")


def _consent(resource: Mapping[str, Any]) -> Rows:
    provision = resource.get("provision")
    if not isinstance(provision, dict):
        return {}
    kind = provision.get("type")
    if kind == "permit":
        param, role = CONSENT_PERMIT, RECIPIENT
        purposes = provision.get("purpose")
        if not any(
            c.get("system") == ACT_REASON and c.get("code") == TREATMENT
            for c in (purposes if isinstance(purposes, list) else [])
            if isinstance(c, dict)
        ):
            return {}
    elif kind == "deny":
        param, role = CONSENT_DENY, CUSTODIAN
    else:
        return {}
    found: list[tuple[Any, ...]] = []
    actors = provision.get("actor")
    for actor in actors if isinstance(actors, list) else []:
        if not isinstance(actor, dict) or (PARTICIPATION, role) not in set(
            _codes(actor.get("role"))
        ):
            continue
        row = reference.row_of(actor.get("reference"))
        if row is not None:
            found.append((param, *row))
    if not found:
        return {}
    period = provision.get("period")
    limited = date.rows([("Period", period)]) if isinstance(period, dict) else []
    if limited:
        return {reference.TABLE: found, date.TABLE: [(param, *limited[0])]}
    return {reference.TABLE: found}


def in_force(alias: str, param: str) -> str:
    """SQL: whether the consent or block whose `search_reference` row is `alias` is in force
    now, i.e. it has no period (`provision.period`) that excludes this moment."""
    return (
        f"NOT EXISTS (SELECT 1 FROM search_date cv WHERE cv.resource_pk = {alias}.resource_pk "
        f"AND cv.param = '{param}' AND NOT (cv.low <= now() AND cv.high > now()))"
    )
