"""URI search (https://hl7.org/fhir/R4/search.html#uri): exact, `:below` and `:above`."""

from __future__ import annotations

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.store.params import uri
from flode.store.sql import Args

from .conftest import Index


def test_a_uri_is_indexed_as_written() -> None:
    assert uri.rows([("uri", "http://acme.org/fhir/ValueSet/123"), ("uri", "")]) == [
        ("http://acme.org/fhir/ValueSet/123",)
    ]


def test_the_uris_above_one_are_its_path_prefixes() -> None:
    assert uri.above("http://acme.org/fhir/a") == [
        "http://acme.org",
        "http://acme.org/",
        "http://acme.org/fhir",
        "http://acme.org/fhir/",
        "http://acme.org/fhir/a",
    ]


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, uri.TABLE, uri.COLUMNS)
    await index.add("vs", "url", uri.rows([("uri", "http://acme.org/fhir/ValueSet/123")]))
    await index.add("fhir", "url", uri.rows([("uri", "http://acme.org/fhir")]))
    await index.add("other", "url", uri.rows([("uri", "http://acme.org/fhirx")]))
    return index


@pytest.mark.parametrize(
    ("value", "modifier", "expected"),
    [
        ("http://acme.org/fhir", None, {"fhir"}),
        ("http://acme.org/fhir/", "below", {"vs"}),
        ("http://acme.org/fhir", "below", {"vs", "fhir", "other"}),
        ("http://acme.org/fhir/ValueSet/123/_history/5", "above", {"vs", "fhir"}),
        ("http://acme.org/fhir/ValueSet", "above", {"fhir"}),
    ],
)
async def test_uri_matching(
    index: Index, value: str, modifier: str | None, expected: set[str]
) -> None:
    assert await index.ids(uri.search, "url", value, modifier) == expected


async def test_missing(index: Index) -> None:
    assert await index.ids(uri.search, "url", "false", "missing") == {"vs", "fhir", "other"}


@pytest.mark.parametrize(("value", "modifier"), [("", None), ("http://a", "contains")])
def test_invalid_values_are_bad_requests(value: str, modifier: str | None) -> None:
    with pytest.raises(FhirError) as caught:
        uri.search("url", modifier, value, Args())
    assert caught.value.status == 400
