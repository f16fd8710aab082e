"""String search (https://hl7.org/fhir/R4/search.html#string): rows and predicates."""

from __future__ import annotations

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.store.params import string
from flode.store.sql import Args
from flode.text import normalise

from .conftest import Index


def test_normalising_lower_cases_and_strips_accents() -> None:
    assert normalise("Östersund") == "ostersund"
    assert normalise("  Åsa   Ærø  ") == "asa aero"
    assert normalise("STRASSE") == normalise("Straße")


def test_each_part_of_a_humanname_is_a_value_of_its_own() -> None:
    name = {
        "family": "Öberg",
        "given": ["Anna", "Lena"],
        "prefix": ["Dr"],
        "suffix": ["MD"],
        "text": "Dr Anna Öberg",
    }
    assert string.rows([("HumanName", name)]) == [
        ("oberg", "Öberg"),
        ("anna", "Anna"),
        ("lena", "Lena"),
        ("dr", "Dr"),
        ("md", "MD"),
        ("dr anna oberg", "Dr Anna Öberg"),
    ]


def test_each_part_of_an_address_is_a_value_of_its_own() -> None:
    address = {
        "line": ["Storgatan 1"],
        "city": "Östersund",
        "district": "Jämtland",
        "state": "Z",
        "postalCode": "831 30",
        "country": "SE",
        "text": "Storgatan 1, Östersund",
        "use": "home",
    }
    assert [exact for _, exact in string.rows([("Address", address)])] == [
        "Storgatan 1",
        "Östersund",
        "Jämtland",
        "Z",
        "831 30",
        "SE",
        "Storgatan 1, Östersund",
    ]


def test_strings_and_markdown_are_values_and_long_ones_are_cut_for_the_index() -> None:
    rows = string.rows([("string", "Hej"), ("markdown", "x" * 1000)])
    assert rows[0] == ("hej", "Hej")
    assert len(rows[1][0]) == string.MAX_INDEXED
    assert rows[1][1] == "x" * 1000


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, string.TABLE, string.COLUMNS)
    await index.add("ostersund", "address-city", string.rows([("Address", {"city": "Östersund"})]))
    await index.add("oster", "address-city", string.rows([("string", "Öster Malma")]))
    await index.add("lund", "address-city", string.rows([("string", "Lund")]))
    await index.add("percent", "address-city", string.rows([("string", "100% Ost_erby")]))
    await index.add("nameless", "name", string.rows([("string", "x")]))
    return index


@pytest.mark.parametrize("value", ["Östersund", "ostersund", "OSTERSUND", "Ostersund"])
async def test_matching_ignores_case_and_accents(index: Index, value: str) -> None:
    assert await index.ids(string.search, "address-city", value) == {"ostersund"}


async def test_a_value_without_modifier_matches_the_start_of_the_string(index: Index) -> None:
    assert await index.ids(string.search, "address-city", "öst") == {"ostersund", "oster"}
    assert await index.ids(string.search, "address-city", "und") == set()


async def test_exact_matches_the_whole_string_with_case_and_accents(index: Index) -> None:
    assert await index.ids(string.search, "address-city", "Östersund", "exact") == {"ostersund"}
    assert await index.ids(string.search, "address-city", "Ostersund", "exact") == set()
    assert await index.ids(string.search, "address-city", "Öster", "exact") == set()


async def test_contains_matches_anywhere_in_the_string(index: Index) -> None:
    assert await index.ids(string.search, "address-city", "UND", "contains") == {
        "ostersund",
        "lund",
    }


async def test_like_wildcards_in_the_value_are_literal(index: Index) -> None:
    assert await index.ids(string.search, "address-city", "%", "contains") == {"percent"}
    assert await index.ids(string.search, "address-city", "t_e", "contains") == {"percent"}


async def test_comma_separated_values_match_any_and_an_escaped_comma_is_literal(
    index: Index,
) -> None:
    assert await index.ids(string.search, "address-city", "lund,oster") == {
        "lund",
        "ostersund",
        "oster",
    }
    await index.add("comma", "address-city", string.rows([("string", "Lund, Skåne")]))
    assert await index.ids(string.search, "address-city", r"lund\, sk") == {"comma"}


async def test_missing(index: Index) -> None:
    assert await index.ids(string.search, "name", "false", "missing") == {"nameless"}
    assert "nameless" not in await index.ids(string.search, "name", "true", "missing")


@pytest.mark.parametrize(("modifier", "value"), [(None, ""), ("text", "x"), (None, " ")])
def test_invalid_values_are_bad_requests(modifier: str | None, value: str) -> None:
    with pytest.raises(FhirError) as caught:
        string.search("name", modifier, value, Args())
    assert caught.value.status == 400
