"""FHIR date, dateTime and instant values as the ranges they stand for
(https://hl7.org/fhir/R4/search.html#date)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flode.fhir.dates import format_instant, parse_instant, parse_range
from flode.fhir.errors import FhirError


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2024", utc(2024, 1, 1), utc(2025, 1, 1)),
        ("2024-02", utc(2024, 2, 1), utc(2024, 3, 1)),
        ("2024-12", utc(2024, 12, 1), utc(2025, 1, 1)),
        ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
        ("2024-03-01T10:15", utc(2024, 3, 1, 10, 15), utc(2024, 3, 1, 10, 16)),
        ("2024-03-01T10:15:30Z", utc(2024, 3, 1, 10, 15, 30), utc(2024, 3, 1, 10, 15, 31)),
        (
            "2024-03-01T10:15:30.5Z",
            utc(2024, 3, 1, 10, 15, 30, 500000),
            utc(2024, 3, 1, 10, 15, 30, 600000),
        ),
        (
            "2024-03-01T10:15:30.123456Z",
            utc(2024, 3, 1, 10, 15, 30, 123456),
            utc(2024, 3, 1, 10, 15, 30, 123457),
        ),
        (
            "2024-03-01T10:15:30.123456789Z",
            utc(2024, 3, 1, 10, 15, 30, 123456),
            utc(2024, 3, 1, 10, 15, 30, 123457),
        ),
        ("2024-03-01T10:15:30+01:00", utc(2024, 3, 1, 9, 15, 30), utc(2024, 3, 1, 9, 15, 31)),
        ("2024-03-01T00:00:00-05:30", utc(2024, 3, 1, 5, 30), utc(2024, 3, 1, 5, 30, 1)),
        ("2024-01-01T00:00:00+14:00", utc(2023, 12, 31, 10), utc(2023, 12, 31, 10, 0, 1)),
    ],
)
def test_a_value_stands_for_the_range_of_its_precision(
    text: str, low: datetime, high: datetime
) -> None:
    assert parse_range(text) == (low, high)
    assert parse_instant(text, "_since") == low


def test_a_value_without_a_time_zone_is_taken_as_utc() -> None:
    low, _ = parse_range("2024-06-01T12:00:00")
    assert low == utc(2024, 6, 1, 12)
    assert low.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "24",
        "2024-1",
        "2024-13",
        "2024-00-10",
        "2023-02-29",
        "2024-04-31",
        "2024-01-01T24:00",
        "2024-01-01T10",
        "2024-01-01T10:60",
        "2024-01-01T10:00:61Z",
        "2024-01-01T10:00:00.Z",
        "2024-01-01T10:00:00.1234567890Z",
        "2024-01-01T10:00:00+25:00",
        "2024-01-01T10:00:00+01:60",
        "2024-01-01T10:00:00+0100",
        "2024-01-01 10:00:00",
        "2024-01-01T10:00:00z",
        "0000",
        "\u0662\u0660\u0662\u0664",  # 2024 in Arabic-Indic digits
        "yesterday",
        "2024-01-01T10:00:00Z ",
    ],
)
def test_an_invalid_value_is_a_400_naming_the_parameter(text: str) -> None:
    with pytest.raises(FhirError) as raised:
        parse_range(text, "_lastUpdated")
    assert raised.value.status == 400
    assert raised.value.issues[0].expression == ("_lastUpdated",)


@pytest.mark.parametrize(
    "text",
    ["9999", "9999-12", "9999-12-31", "9999-12-31T23:59:59Z", "9999-12-31T23:00:00-05:00"],
)
def test_a_range_reaching_past_the_year_9999_ends_there(text: str) -> None:
    low, high = parse_range(text)
    assert low <= high
    assert high == datetime.max.replace(tzinfo=UTC)


def test_a_range_before_the_year_1_starts_there() -> None:
    low, high = parse_range("0001-01-01T00:30:00+01:00")
    assert low == high == datetime.min.replace(tzinfo=UTC)
    assert parse_range("0001") == (utc(1, 1, 1), utc(2, 1, 1))


def test_format_instant_writes_utc_with_microseconds() -> None:
    stockholm = timezone(timedelta(hours=2))
    value = datetime(2024, 6, 1, 14, 5, 6, 7, tzinfo=stockholm)
    assert format_instant(value) == "2024-06-01T12:05:06.000007Z"
    assert parse_instant(format_instant(value), "_since") == value
