"""SMART scopes (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html) mean
what the specification says, in their v2 and v1 forms."""

from __future__ import annotations

import pytest

from flode.access.scopes import Grant, Scopes, parse_scope


@pytest.mark.parametrize(
    ("scope", "grant"),
    [
        ("patient/Observation.rs", Grant("patient", "Observation", frozenset("rs"))),
        ("user/*.cruds", Grant("user", "*", frozenset("cruds"))),
        ("system/Patient.r", Grant("system", "Patient", frozenset("r"))),
        ("patient/*.read", Grant("patient", "*", frozenset("rs"))),
        ("user/Observation.write", Grant("user", "Observation", frozenset("cud"))),
        ("system/*.*", Grant("system", "*", frozenset("cruds"))),
        (
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
            "observation-category|laboratory",
            Grant(
                "patient",
                "Observation",
                frozenset("rs"),
                (
                    (
                        "category",
                        "http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                    ),
                ),
            ),
        ),
    ],
)
def test_a_data_scope_grants_its_letters_on_its_type_in_its_context(
    scope: str, grant: Grant
) -> None:
    assert parse_scope(scope) == grant


@pytest.mark.parametrize(
    "scope",
    [
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "patient/Observation.sr",  # v2 letters come in the order c r u d s
        "patient/Observation.rrs",
        "patient/Observation.x",
        "clinic/Observation.rs",
        "patient/observation.rs",
        "patient/Observation",
    ],
)
def test_other_and_malformed_scopes_grant_no_data(scope: str) -> None:
    assert parse_scope(scope) is None


def test_a_token_may_do_what_any_of_its_grants_allows() -> None:
    scopes = Scopes.parse(["openid", "patient/Observation.rs", "user/Patient.r"])
    assert scopes.allows("Observation", "s")
    assert scopes.allows("Patient", "r")
    assert not scopes.allows("Patient", "s")
    assert not scopes.allows("Observation", "c")
    assert not scopes.allows("Encounter", "r")
    assert scopes.unrestricted("Patient", "r")
    assert not scopes.unrestricted("Observation", "r")  # only the launch patient's


def test_a_granular_grant_is_not_unrestricted() -> None:
    scopes = Scopes.parse(["user/Observation.rs?category=laboratory"])
    assert scopes.allows("Observation", "r")
    assert not scopes.unrestricted("Observation", "r")
