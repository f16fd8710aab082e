"""Reference search (https://hl7.org/fhir/R4/search.html#reference): rows and predicates."""

from __future__ import annotations

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.store.params import reference
from flode.store.sql import Args

from .conftest import Index

HSA = "urn:oid:1.2.752.29.4.19"


def test_a_relative_reference_gives_type_and_id_without_version() -> None:
    assert reference.rows([("Reference", {"reference": "Patient/123/_history/4"})]) == [
        ("Patient", "123", None, None, None)
    ]


def test_an_absolute_url_is_kept_and_parsed_into_type_and_id() -> None:
    url = "https://fhir.vgregion.se/fhir/Patient/123"
    assert reference.rows([("Reference", {"reference": url + "/_history/2"})]) == [
        ("Patient", "123", url, None, None)
    ]
    assert reference.rows([("Reference", {"reference": "urn:uuid:1f7d"})]) == [
        (None, None, "urn:uuid:1f7d", None, None)
    ]


def test_a_logical_reference_is_indexed_by_its_identifier() -> None:
    node = ("Reference", {"type": "Practitioner", "identifier": {"system": HSA, "value": "SE1"}})
    assert reference.rows([node]) == [("Practitioner", None, None, HSA, "SE1")]


def test_contained_and_empty_references_are_not_indexed() -> None:
    assert reference.rows([("Reference", {"reference": "#med1"}), ("Reference", {})]) == []


def test_a_canonical_drops_its_version() -> None:
    url = "http://example.org/fhir/Questionnaire/phq9"
    assert reference.rows([("canonical", url + "|1.0")]) == [
        ("Questionnaire", "phq9", url, None, None)
    ]


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, reference.TABLE, reference.COLUMNS)
    await index.add("rel", "subject", reference.rows([("Reference", {"reference": "Patient/1"})]))
    await index.add(
        "abs",
        "subject",
        reference.rows([("Reference", {"reference": "https://other.se/fhir/Patient/2"})]),
    )
    await index.add("group", "subject", reference.rows([("Reference", {"reference": "Group/1"})]))
    await index.add(
        "logical",
        "performer",
        reference.rows([("Reference", {"identifier": {"system": HSA, "value": "SE1"}})]),
    )
    return index


@pytest.mark.parametrize(
    ("value", "modifier", "expected"),
    [
        ("1", None, {"rel", "group"}),
        ("1", "Patient", {"rel"}),
        ("Patient/1", None, {"rel"}),
        ("Patient/1/_history/3", None, {"rel"}),
        ("Patient/2", None, {"abs"}),
        ("https://other.se/fhir/Patient/2", None, {"abs"}),
        ("https://other.se/fhir/Patient/1", None, set()),
        ("Group/1,Patient/2", None, {"group", "abs"}),
    ],
)
async def test_reference_forms(
    index: Index, value: str, modifier: str | None, expected: set[str]
) -> None:
    assert await index.ids(reference.search, "subject", value, modifier) == expected


async def test_identifier_modifier_matches_reference_identifier(index: Index) -> None:
    assert await index.ids(reference.search, "performer", f"{HSA}|SE1", "identifier") == {"logical"}
    assert await index.ids(reference.search, "performer", "SE1", "identifier") == {"logical"}
    assert await index.ids(reference.search, "performer", "|SE1", "identifier") == set()


async def test_missing(index: Index) -> None:
    assert await index.ids(reference.search, "performer", "true", "missing") == {
        "rel",
        "abs",
        "group",
    }


@pytest.mark.parametrize(
    ("value", "modifier"),
    [("Patient/1", "Group"), ("not a reference", None), ("1", "below"), ("", "identifier")],
)
def test_invalid_values_are_bad_requests_naming_the_parameter(
    value: str, modifier: str | None
) -> None:
    with pytest.raises(FhirError) as caught:
        reference.search("subject", modifier, value, Args())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("subject",)
