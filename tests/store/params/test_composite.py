"""Composite search (https://hl7.org/fhir/R4/search.html#composite): components of the same
element."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.fhir.json import Decimal
from flode.store.params import composite
from flode.store.sql import Args

from .conftest import Index

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
TOKEN_QUANTITY = ("token", "quantity")


def component(code: str, value: str) -> list[composite.Component]:
    concept = {"coding": [{"system": LOINC, "code": code}]}
    amount = {"value": Decimal(value), "system": UCUM, "code": "mm[Hg]"}
    return [("token", [("CodeableConcept", concept)]), ("quantity", [("Quantity", amount)])]


def test_a_row_combines_the_components_of_one_element() -> None:
    assert composite.rows([component("8480-6", "140")]) == [
        (LOINC, "8480-6", UCUM, "mm[Hg]", None, D(140), D("139.5"), D("140.5"), None, None)
    ]


def test_a_date_and_a_string_second_component() -> None:
    first = ("token", [("code", "x")])
    ((*_, low, high),) = composite.rows([[first, ("date", [("date", "2020")])]])
    assert (low, high) == (datetime(2020, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    assert composite.rows([[first, ("string", [("string", "Ö")])]])[0][:4] == (None, "x", None, "o")


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, composite.TABLE, composite.COLUMNS)
    # Systolic 120 and diastolic 140 in one resource: no component is systolic 140.
    await index.add(
        "mixed",
        "component-code-value-quantity",
        composite.rows([component("8480-6", "120"), component("8462-4", "140")]),
    )
    await index.add(
        "high", "component-code-value-quantity", composite.rows([component("8480-6", "140")])
    )
    return index


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{LOINC}|8480-6$140", {"high"}),
        ("8480-6$gt130", {"high"}),
        ("8480-6$lt130|http://unitsofmeasure.org|mm[Hg]", {"mixed"}),
        ("8462-4$140||mm[Hg]", {"mixed"}),
        ("8462-4$140||kg", set()),
        ("8480-6$120,8480-6$140", {"mixed", "high"}),
    ],
)
async def test_components_must_match_within_the_same_element(
    index: Index, value: str, expected: set[str]
) -> None:
    def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
        return composite.search(param, TOKEN_QUANTITY, modifier, raw, args)

    assert await index.ids(search, "component-code-value-quantity", value) == expected


@pytest.mark.parametrize("value", ["8480-6", "8480-6$abc", "a$b$c"])
def test_invalid_values_are_bad_requests(value: str) -> None:
    with pytest.raises(FhirError) as caught:
        composite.search("code-value-quantity", TOKEN_QUANTITY, None, value, Args())
    assert caught.value.status == 400
