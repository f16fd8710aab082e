"""Parsing search parameters (https://hl7.org/fhir/R4/search.html)."""

from __future__ import annotations

import pytest

from flode.fhir.errors import FhirError
from flode.fhir.search_query import (
    Criterion,
    Has,
    Include,
    Link,
    SortKey,
    parse,
)


def test_a_plain_parameter_keeps_its_raw_value_for_or_splitting_later() -> None:
    query = parse([("code", "http://loinc.org|8867-4,http://loinc.org|8310-5")])
    assert query.criteria == (
        Criterion("code", None, "http://loinc.org|8867-4,http://loinc.org|8310-5"),
    )


def test_a_repeated_parameter_gives_one_criterion_each_for_and() -> None:
    query = parse([("date", "ge2025-01-01"), ("date", "lt2026-01-01")])
    assert [c.value for c in query.criteria if isinstance(c, Criterion)] == [
        "ge2025-01-01",
        "lt2026-01-01",
    ]


def test_a_modifier_is_split_from_the_name() -> None:
    assert parse([("name:exact", "Åsa")]).criteria == (Criterion("name", "exact", "Åsa"),)
    assert parse([("gender:missing", "true")]).criteria == (Criterion("gender", "missing", "true"),)


def test_a_chain_names_each_reference_and_its_optional_type() -> None:
    query = parse([("subject:Patient.name", "peter")])
    assert query.criteria == (Criterion("name", None, "peter", (Link("subject", "Patient"),)),)
    deep = parse([("general-practitioner.organization.name:contains", "hälsan")])
    assert deep.criteria == (
        Criterion(
            "name",
            "contains",
            "hälsan",
            (Link("general-practitioner"), Link("organization")),
        ),
    )


def test_has_names_the_referring_type_its_reference_and_the_inner_criterion() -> None:
    query = parse([("_has:Observation:patient:code", "1234-5")])
    assert query.criteria == (Has("Observation", "patient", Criterion("code", None, "1234-5")),)


def test_has_nests() -> None:
    query = parse([("_has:Observation:patient:_has:AuditEvent:entity:agent", "x")])
    assert query.criteria == (
        Has("Observation", "patient", Has("AuditEvent", "entity", Criterion("agent", None, "x"))),
    )


@pytest.mark.parametrize("name", ["_has:Observation:patient", "_has::patient:code", "_has:X"])
def test_a_malformed_has_is_refused_with_400(name: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse([(name, "x")])
    assert caught.value.status == 400


def test_includes_and_revincludes_with_iterate() -> None:
    query = parse(
        [
            ("_include", "Observation:subject:Patient"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_revinclude", "Provenance:target"),
        ]
    )
    assert query.includes == (
        Include("Observation", "subject", "Patient"),
        Include("Patient", "general-practitioner", None, iterate=True),
        Include("Provenance", "target", reverse=True),
    )


@pytest.mark.parametrize("value", ["Observation", "Observation:", ":subject", "a:b:c:d"])
def test_a_malformed_include_is_refused_with_400(value: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse([("_include", value)])
    assert caught.value.status == 400


def test_sort_keys_keep_their_order_and_direction() -> None:
    assert parse([("_sort", "-date,code")]).sort == (SortKey("date", True), SortKey("code"))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_count", "-1"),
        ("_count", "ten"),
        ("_summary", "maybe"),
        ("_total", "all"),
        ("_contained", "yes"),
        ("_sort", ""),
        ("_sort", "-"),
        ("_include:deep", "Observation:subject"),
    ],
)
def test_a_malformed_result_parameter_is_refused_with_400(name: str, value: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse([(name, value)])
    assert caught.value.status == 400
    assert caught.value.issues[0].expression


def test_result_parameters_are_parsed_and_paging_parameters_left_to_the_caller() -> None:
    query = parse(
        [
            ("_count", "5"),
            ("_summary", "count"),
            ("_total", "accurate"),
            ("_elements", "name, birthDate"),
            ("_offset", "10"),
            ("_snapshot", "2026-01-01T00:00:00Z"),
            ("_format", "json"),
        ]
    )
    assert query.count == 5
    assert query.summary == "count"
    assert query.total == "accurate"
    assert query.elements == ("name", "birthDate")
    assert query.criteria == ()
