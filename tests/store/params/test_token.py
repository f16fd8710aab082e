"""Token search (https://hl7.org/fhir/R4/search.html#token): rows and predicates."""

from __future__ import annotations

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.store.params import token
from flode.store.sql import Args

from .conftest import Index

LOINC = "http://loinc.org"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def test_each_coding_of_a_codeableconcept_is_a_system_and_code_with_its_display() -> None:
    concept = {
        "coding": [
            {"system": LOINC, "code": "8480-6", "display": "Systolic"},
            {"code": "bp"},
        ],
        "text": "Blodtryck Övre",
    }
    assert token.rows([("CodeableConcept", concept)]) == [
        (LOINC, "8480-6", "systolic", None, None),
        (None, "bp", None, None, None),
        (None, None, "blodtryck ovre", None, None),
    ]


def test_a_coding_is_indexed_with_its_system() -> None:
    assert token.rows([("Coding", {"system": "s", "code": "c"})]) == [("s", "c", None, None, None)]


def test_an_identifier_carries_each_type_coding_for_of_type() -> None:
    identifier = {
        "system": "urn:oid:1.2.752.129.2.1.3.1",
        "value": "191212121212",
        "type": {"coding": [{"system": V2, "code": "NI"}], "text": "Personnummer"},
    }
    assert token.rows([("Identifier", identifier)]) == [
        ("urn:oid:1.2.752.129.2.1.3.1", "191212121212", "personnummer", V2, "NI")
    ]
    assert token.rows([("Identifier", {"value": "x"})]) == [(None, "x", None, None, None)]


def test_contactpoint_code_boolean_and_string_are_codes_without_system() -> None:
    nodes = [
        ("ContactPoint", {"system": "phone", "value": "+46 31 123"}),
        ("code", "final"),
        ("boolean", False),
        ("id", "abc"),
        ("uri", "http://x"),
    ]
    assert [row[:2] for row in token.rows(nodes)] == [
        (None, "+46 31 123"),
        (None, "final"),
        (None, "false"),
        (None, "abc"),
        (None, "http://x"),
    ]


def test_long_codes_are_indexed_by_digest() -> None:
    ((_, code, *_),) = token.rows([("code", "x" * 600)])
    assert code is not None
    assert code.startswith("sha256:")


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, token.TABLE, token.COLUMNS)
    await index.add(
        "systolic",
        "code",
        token.rows(
            [
                (
                    "CodeableConcept",
                    {
                        "coding": [
                            {
                                "system": LOINC,
                                "code": "8480-6",
                                "display": "Systolic blood pressure",
                            }
                        ],
                    },
                )
            ]
        ),
    )
    await index.add("local", "code", token.rows([("Coding", {"code": "8480-6"})]))
    await index.add(
        "other",
        "code",
        token.rows(
            [
                (
                    "CodeableConcept",
                    {
                        "coding": [{"system": "http://snomed.info/sct", "code": "271649006"}],
                        "text": "Övre blodtryck",
                    },
                )
            ]
        ),
    )
    await index.add("none", "status", token.rows([("code", "final")]))
    await index.add(
        "patient",
        "identifier",
        token.rows(
            [
                (
                    "Identifier",
                    {
                        "system": "urn:oid:1.2.752.129.2.1.3.1",
                        "value": "191212121212",
                        "type": {"coding": [{"system": V2, "code": "NI"}]},
                    },
                )
            ]
        ),
    )
    return index


async def test_a_code_matches_in_any_system(index: Index) -> None:
    assert await index.ids(token.search, "code", "8480-6") == {"systolic", "local"}


async def test_system_and_code_match_only_that_system(index: Index) -> None:
    assert await index.ids(token.search, "code", f"{LOINC}|8480-6") == {"systolic"}


async def test_a_bar_before_the_code_matches_codes_without_system(index: Index) -> None:
    assert await index.ids(token.search, "code", "|8480-6") == {"local"}


async def test_a_system_with_bar_matches_any_code_in_the_system(index: Index) -> None:
    assert await index.ids(token.search, "code", "http://snomed.info/sct|") == {"other"}


async def test_comma_separated_values_match_any(index: Index) -> None:
    assert await index.ids(token.search, "code", "|8480-6,271649006") == {"local", "other"}


async def test_not_matches_resources_without_the_code_including_those_without_the_param(
    index: Index,
) -> None:
    assert await index.ids(token.search, "code", "8480-6", "not") == {"other", "none", "patient"}


async def test_text_matches_display_and_concept_text_as_a_string_does_from_the_start(
    index: Index,
) -> None:
    assert await index.ids(token.search, "code", "systolic", "text") == {"systolic"}
    assert await index.ids(token.search, "code", "SYSTOLIC BLOOD", "text") == {"systolic"}
    assert await index.ids(token.search, "code", "ovre", "text") == {"other"}
    # "processed as a string": a later word is not the start of the text
    assert await index.ids(token.search, "code", "blood", "text") == set()
    assert await index.ids(token.search, "code", "lood", "text") == set()


async def test_of_type_matches_type_system_type_code_and_value(index: Index) -> None:
    assert await index.ids(token.search, "identifier", f"{V2}|NI|191212121212", "of-type") == {
        "patient"
    }
    assert await index.ids(token.search, "identifier", f"{V2}|MR|191212121212", "of-type") == set()


async def test_missing_true_matches_resources_without_the_param(index: Index) -> None:
    assert await index.ids(token.search, "status", "true", "missing") == {
        "systolic",
        "local",
        "other",
        "patient",
    }
    assert await index.ids(token.search, "status", "false", "missing") == {"none"}


async def test_an_escaped_bar_is_part_of_the_code(index: Index) -> None:
    await index.add("piped", "code", token.rows([("code", "a|b")]))
    assert await index.ids(token.search, "code", r"a\|b") == {"piped"}


@pytest.mark.parametrize("modifier", ["in", "below", "above", "not-in"])
def test_terminology_modifiers_are_refused_as_not_supported(modifier: str) -> None:
    with pytest.raises(FhirError) as caught:
        token.search("code", modifier, "http://vs", Args())
    assert caught.value.status == 400
    assert "not supported" in str(caught.value)


@pytest.mark.parametrize(
    ("modifier", "value"),
    [(None, "|"), (None, "a|b|c"), ("of-type", "a|b"), ("missing", "maybe"), ("exact", "x")],
)
def test_invalid_values_are_bad_requests_naming_the_parameter(
    modifier: str | None, value: str
) -> None:
    with pytest.raises(FhirError) as caught:
        token.search("code", modifier, value, Args())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("code",)
