"""Number and quantity search (https://hl7.org/fhir/R4/search.html#number, #quantity)."""

from __future__ import annotations

from decimal import Decimal as D

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.fhir.json import Decimal, loads
from flode.store.params import number, quantity
from flode.store.sql import Args

from .conftest import Index

UCUM = "http://unitsofmeasure.org"


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", "99.5", "100.5"),
        ("100.00", "99.995", "100.005"),
        ("1.50", "1.495", "1.505"),
        ("1e2", "50", "150"),
        ("1.0e2", "95", "105"),
        ("-5.4", "-5.45", "-5.35"),
        ("0.001", "0.0005", "0.0015"),
    ],
)
def test_a_decimal_stands_for_the_range_its_significant_digits_imply(
    text: str, low: str, high: str
) -> None:
    ((_, _, _, value, found_low, found_high),) = number.rows([("decimal", Decimal(text))])
    assert (value, found_low, found_high) == (D(text), D(low), D(high))


def test_an_integer_is_exact() -> None:
    assert number.rows([("integer", 7)]) == [(None, None, None, D(7), D(7), D(7))]


def test_a_decimal_keeps_the_precision_it_was_written_with() -> None:
    value = loads(b'{"value": 5.40}')["value"]
    ((*_, low, high),) = quantity.rows([("Quantity", {"value": value, "code": "mg"})])
    assert (low, high) == (D("5.395"), D("5.405"))


def test_a_quantity_keeps_system_code_and_unit() -> None:
    node = ("Age", {"value": 42, "system": UCUM, "code": "a", "unit": "år"})
    assert quantity.rows([node]) == [(UCUM, "a", "år", D(42), D("41.5"), D("42.5"))]


def test_money_is_a_quantity_in_its_currency() -> None:
    assert quantity.rows([("Money", {"value": Decimal("9.90"), "currency": "SEK"})]) == [
        (quantity.CURRENCIES, "SEK", None, D("9.90"), D("9.895"), D("9.905"))
    ]


def test_a_range_is_a_row_from_its_low_to_its_high() -> None:
    node = ("Range", {"low": {"value": 2, "code": "mg"}, "high": {"value": 4, "code": "mg"}})
    assert quantity.rows([node]) == [(None, "mg", None, None, D(2), D(4))]
    ((*_, low, high),) = quantity.rows([("Range", {"low": {"value": 2}})])
    assert low == 2
    assert high > D("1e100")


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, quantity.TABLE, quantity.COLUMNS)
    for id, text in [("q5.40", "5.40"), ("q5.449", "5.449"), ("q5.35", "5.35"), ("q100", "100")]:
        await index.add(
            id,
            "value-quantity",
            quantity.rows([("Quantity", {"value": Decimal(text), "system": UCUM, "code": "mg"})]),
        )
    await index.add(
        "g5.4",
        "value-quantity",
        quantity.rows([("Quantity", {"value": Decimal("5.4"), "unit": "g"})]),
    )
    await index.add(
        "range",
        "value-quantity",
        quantity.rows(
            [("Range", {"low": {"value": 200, "code": "mg"}, "high": {"value": 300, "code": "mg"}})]
        ),
    )
    await index.add("n7", "probability", number.rows([("integer", 7)]))
    await index.add("n0.25", "probability", number.rows([("decimal", Decimal("0.25"))]))
    return index


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5.4", {"q5.40", "q5.449", "g5.4"}),
        ("5.40", {"q5.40"}),
        ("5.4|http://unitsofmeasure.org|mg", {"q5.40", "q5.449"}),
        ("5.4||mg", {"q5.40", "q5.449"}),
        ("5.4||g", {"g5.4"}),
        ("5.4|http://other|mg", set()),
        ("ne5.4||mg", {"q5.35", "q100", "range"}),
        ("gt5.4||mg", {"q5.449", "q100", "range"}),
        ("ge5.40||mg", {"q5.40", "q5.449", "q100", "range"}),
        ("lt5.4||mg", {"q5.35"}),
        ("le5.4||mg", {"q5.40", "q5.35"}),
        ("sa5.4||mg", {"q100", "range"}),
        ("eb5.4||mg", set()),
        ("eb5.40||mg", {"q5.35"}),
        ("ap100||mg", {"q100"}),
        ("ap250||mg", {"range"}),
        ("250||mg", set()),
        ("1e2||mg", {"q100"}),
        ("5.35,100", {"q5.35", "q100"}),
    ],
)
async def test_quantity_prefixes_use_the_implicit_precision(
    index: Index, value: str, expected: set[str]
) -> None:
    assert await index.ids(quantity.search, "value-quantity", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", {"n7"}),
        ("7.0", {"n7"}),
        ("0.25", {"n0.25"}),
        ("0.2", set()),
        ("gt0.25", {"n7"}),
        ("lt7", {"n0.25"}),
        ("le7", {"n0.25", "n7"}),
        ("ap0.26", {"n0.25"}),
    ],
)
async def test_number_prefixes(index: Index, value: str, expected: set[str]) -> None:
    assert await index.ids(number.search, "probability", value) == expected


async def test_missing(index: Index) -> None:
    assert await index.ids(number.search, "probability", "false", "missing") == {"n7", "n0.25"}


@pytest.mark.parametrize(
    "value", ["abc", "5,4", "5.4|mg", "1e99999", "NaN", "Infinity", "xx5", "5.4|a|b|c", ".5"]
)
def test_invalid_values_are_bad_requests_naming_the_parameter(value: str) -> None:
    with pytest.raises(FhirError) as caught:
        quantity.condition("value-quantity", None, value, Args())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("value-quantity",)
