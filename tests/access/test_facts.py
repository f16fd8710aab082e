"""The facts the access rules read (flode.access.facts): which rows a resource gives, keyed by
its patient, and none for what does not say enough."""

from __future__ import annotations

from typing import Any

import pytest

from flode.access import facts
from flode.store.params import date

HSA = "urn:oid:1.2.752.29.4.19"


def episode(**changes: Any) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "managingOrganization": {"reference": "Organization/u1"},
    } | changes


def consent(kind: str, role: str, actor: dict[str, Any], **changes: Any) -> dict[str, Any]:
    provision: dict[str, Any] = {
        "type": kind,
        "actor": [{"role": {"coding": [{"system": facts.PARTICIPATION, "code": role}]}} | actor],
    }
    if kind == "permit":
        provision["purpose"] = [{"system": facts.ACT_REASON, "code": "TREAT"}]
    return {
        "resourceType": "Consent",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "provision": provision,
    } | changes


def test_a_reference_with_an_id_and_an_identifier_names_the_organization_both_ways() -> None:
    organization = {
        "reference": "http://other.example/fhir/Organization/u1",
        "identifier": {"system": HSA, "value": "SE-U1"},
    }
    rows = facts.rows(episode(managingOrganization=organization))[facts.TABLE]
    assert [row[2] for row in rows] == ["Organization/u1", f"{HSA}|SE-U1"]
    assert {row[1] for row in rows} == {"p1"}


def test_a_block_holds_during_its_period_and_a_consent_without_one_always() -> None:
    period = {"start": "2026-01-01", "end": "2026-06-30"}
    block = consent("deny", "CST", {"reference": {"reference": "Organization/u2"}})
    block["provision"]["period"] = period
    [(param, patient, organization, low, high)] = facts.rows(block)[facts.TABLE]
    assert (param, patient, organization) == (facts.CONSENT_DENY, "p1", "Organization/u2")
    assert (low.date().isoformat(), high.date().isoformat()) == ("2026-01-01", "2026-07-01")
    permit = consent("permit", "IRCP", {"reference": {"identifier": {"system": HSA, "value": "P"}}})
    [row] = facts.rows(permit)[facts.TABLE]
    assert row[3:] == (date.FIRST, date.LAST)


@pytest.mark.parametrize(
    "resource",
    [
        episode(status="finished"),
        episode(patient={"reference": "Group/g1"}),
        episode(patient={"identifier": {"value": "19800101-0000"}}),
        episode(managingOrganization={"reference": "Practitioner/x"}),
        episode(managingOrganization="Organization/u1"),
        {
            "resourceType": "Encounter",
            "status": "finished",
            "subject": {"reference": "Patient/p1"},
            "serviceProvider": {"reference": "Organization/u1"},
            "period": {"start": "2026-01-01"},
        },
        consent("deny", "IRCP", {"reference": {"reference": "Organization/u2"}}),
        consent(
            "permit", "IRCP", {"reference": {"reference": "Organization/u2"}}, status="inactive"
        ),
        consent("permit", "IRCP", {"reference": {"reference": "Organization/u2"}}, patient=None),
        consent("maybe", "CST", {"reference": {"reference": "Organization/u2"}}),
        {"resourceType": "Consent", "status": "active", "provision": "deny"},
        {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}},
    ],
    ids=[
        "ended episode",
        "group, not a patient",
        "patient by identifier only",
        "not an organization",
        "organization not a Reference",
        "finished encounter without an end",
        "block naming a recipient, not a custodian",
        "inactive consent",
        "consent without a patient",
        "unknown provision type",
        "provision not an object",
        "other resource",
    ],
)
def test_gives_no_fact_for_what_does_not_say_enough(resource: dict[str, Any]) -> None:
    assert facts.rows(resource) == {}
