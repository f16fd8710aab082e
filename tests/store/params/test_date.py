"""Date search (https://hl7.org/fhir/R4/search.html#date): rows and predicates with prefixes."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from flode.fhir.errors import FhirError
from flode.store.params import date
from flode.store.sql import Args

from .conftest import Index


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def test_a_date_stands_for_the_whole_day_and_a_datetime_for_its_precision() -> None:
    assert date.rows([("date", "2020-01-15")]) == [(utc(2020, 1, 15), utc(2020, 1, 16))]
    assert date.rows([("dateTime", "2026-03-01T10:00:00+01:00")]) == [
        (utc(2026, 3, 1, 9), utc(2026, 3, 1, 9, 0, 1))
    ]
    assert date.rows([("instant", "2026-03-01T10:00:00.123Z")]) == [
        (utc(2026, 3, 1, 10, 0, 0, 123000), utc(2026, 3, 1, 10, 0, 0, 124000))
    ]


def test_a_period_reaches_from_the_start_of_its_start_to_the_end_of_its_end() -> None:
    period = {"start": "2020-01", "end": "2020-03-05"}
    assert date.rows([("Period", period)]) == [(utc(2020, 1, 1), utc(2020, 3, 6))]


def test_an_open_period_end_is_the_end_of_time() -> None:
    assert date.rows([("Period", {"start": "2025"})]) == [(utc(2025, 1, 1), date.LAST)]
    assert date.rows([("Period", {"end": "2025"})]) == [(date.FIRST, utc(2026, 1, 1))]
    assert date.rows([("Period", {})]) == []


def test_only_the_outer_limits_of_a_timing_matter() -> None:
    timing = {
        "event": ["2020-05-01", "2020-02-01T08:00:00Z"],
        "repeat": {"boundsPeriod": {"start": "2020-03-01", "end": "2020-12-31"}},
    }
    assert date.rows([("Timing", timing)]) == [(utc(2020, 2, 1, 8), utc(2021, 1, 1))]


def test_values_that_are_not_dates_are_not_indexed() -> None:
    assert date.rows([("dateTime", "yesterday"), ("date", 2020)]) == []


@pytest.fixture
async def index(clean: asyncpg.Connection) -> Index:
    index = Index(clean, date.TABLE, date.COLUMNS)
    for id, value in [
        ("d2020-01-15", "2020-01-15"),
        ("d2019-12-31", "2019-12-31"),
        ("d2020", "2020"),
    ]:
        await index.add(id, "birthdate", date.rows([("date", value)]))
    for id, value in [
        ("t1000", "2026-03-01T10:00:00+01:00"),
        ("t1100", "2026-03-01T11:00:00+01:00"),
    ]:
        await index.add(id, "date", date.rows([("dateTime", value)]))
    await index.add("open", "period", date.rows([("Period", {"start": "2025-01-01"})]))
    return index


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020", {"d2020-01-15", "d2020"}),
        ("eq2020-01", {"d2020-01-15"}),
        ("2020-01-15", {"d2020-01-15"}),
        ("ne2020", {"d2019-12-31"}),
        ("ge2020-01", {"d2020-01-15", "d2020"}),
        ("gt2020-01", {"d2020"}),
        ("gt2020", set()),
        ("lt2020-01", {"d2019-12-31"}),
        ("le2020-01", {"d2019-12-31", "d2020-01-15"}),
        ("sa2019", {"d2020-01-15", "d2020"}),
        ("eb2020", {"d2019-12-31"}),
        ("eb2020-01-16", {"d2019-12-31", "d2020-01-15"}),
        ("ap2019-06-01", {"d2019-12-31", "d2020-01-15", "d2020"}),
        ("ap2018-01-01", set()),
        ("2019-12-31T23:00:00-02:00", set()),
        ("lt2020-01,gt2020-01", {"d2019-12-31", "d2020"}),
    ],
)
async def test_birthdate_prefixes_compare_ranges(
    index: Index, value: str, expected: set[str]
) -> None:
    assert await index.ids(date.search, "birthdate", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01", {"t1000", "t1100"}),
        ("2026-03-01T10:00+01:00", {"t1000"}),
        ("2026-03-01T09:00Z", {"t1000"}),
        ("sa2026-03-01T10:00+01:00", {"t1100"}),
        ("eb2026-03-01T11:00+01:00", {"t1000"}),
        ("gt2026-03-01T10:00:00+01:00", {"t1100"}),
        ("ge2026-03-01T10:00:00+01:00", {"t1000", "t1100"}),
        ("lt2026-03-01T11:00:00+01:00", {"t1000"}),
    ],
)
async def test_datetime_prefixes_compare_ranges_across_time_zones(
    index: Index, value: str, expected: set[str]
) -> None:
    assert await index.ids(date.search, "date", value) == expected


@pytest.mark.parametrize(
    ("value", "matches"),
    [("ge2030", True), ("lt2025-06", True), ("eq2025", False), ("sa2024", True), ("eb2099", False)],
)
async def test_an_open_ended_period_reaches_into_every_future(
    index: Index, value: str, matches: bool
) -> None:
    assert await index.ids(date.search, "period", value) == ({"open"} if matches else set())


async def test_missing(index: Index) -> None:
    assert await index.ids(date.search, "period", "false", "missing") == {"open"}
    assert "open" not in await index.ids(date.search, "period", "true", "missing")


@pytest.mark.parametrize(
    ("modifier", "value"), [(None, "2020-13"), (None, "xx2020"), (None, "ge"), ("exact", "2020")]
)
def test_invalid_values_are_bad_requests_naming_the_parameter(
    modifier: str | None, value: str
) -> None:
    with pytest.raises(FhirError) as caught:
        date.search("birthdate", modifier, value, Args())
    assert caught.value.status == 400
    assert caught.value.issues[0].expression == ("birthdate",)
