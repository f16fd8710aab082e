"""What a token may be granted (flode.auth.granting) and the failure limit (flode.auth.ratelimit):
pure functions, no server."""

from __future__ import annotations

import pytest

from flode.auth.granting import ALL, BACKEND, USER_FACING, granted, needs_patient
from flode.auth.ratelimit import FailureLimiter


@pytest.mark.parametrize(
    ("requested", "allowed", "expected"),
    [
        # v1 and v2 forms meet; the result is v2.
        ("system/Patient.read", "system/Patient.rs", "system/Patient.rs"),
        ("system/*.*", "system/Patient.rs system/Observation.cruds",
         "system/Observation.cruds system/Patient.rs"),
        # A wildcard asked for is narrowed to the types allowed, and the other way round.
        ("system/*.rs", "system/Observation.cruds", "system/Observation.rs"),
        ("system/Encounter.cruds", "system/*.rs", "system/Encounter.rs"),
        # Granular scopes keep their criteria; different criteria do not meet.
        ("system/Observation.rs", "system/Observation.rs?category=laboratory",
         "system/Observation.rs?category=laboratory"),
        ("system/Observation.rs?category=vital-signs", "system/Observation.rs?category=laboratory",
         ""),
        # Nothing in common: nothing.
        ("system/Encounter.rs", "system/Patient.rs", ""),
        ("system/Patient.cud", "system/Patient.rs", ""),
        # Scopes without data access only by name.
        ("openid launch/patient", "openid", "openid"),
    ],
)  # fmt: skip
def test_granted_is_what_was_asked_within_what_is_allowed(
    requested: str, allowed: str, expected: str
) -> None:
    assert " ".join(granted(requested.split(), allowed.split(), ALL)) == expected


def test_a_kind_of_grant_only_carries_its_contexts() -> None:
    allowed = ["patient/*.rs", "user/*.rs", "system/*.rs"]
    asked = ["patient/Patient.rs", "user/Patient.rs", "system/Patient.rs"]
    assert granted(asked, allowed, BACKEND) == ["system/Patient.rs"]
    assert granted(asked, allowed, USER_FACING) == ["patient/Patient.rs", "user/Patient.rs"]


def test_a_patient_is_needed_for_patient_scopes_and_launch_patient() -> None:
    assert needs_patient(["patient/Observation.rs"])
    assert needs_patient(["launch/patient", "user/*.rs"])
    assert not needs_patient(["user/*.rs", "openid"])


def test_the_failure_limit_counts_a_sliding_minute_per_client() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
        now[0] += 10
    assert limiter.retry_after("a") == 30
    assert limiter.retry_after("b") is None
    now[0] += 30
    assert limiter.retry_after("a") is None
