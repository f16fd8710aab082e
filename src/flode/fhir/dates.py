"""FHIR date, dateTime and instant values as time ranges
(https://hl7.org/fhir/R4/search.html#date): "2026" is all of 2026, "2026-03-01T10:00" is that
minute. A value without a time zone is taken as UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from flode.fhir.errors import bad_request

_PATTERN = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))?)?)?)?$",
    re.ASCII,
)
# The ends of time: a range reaching past them is cut off there.
_MIN = datetime.min.replace(tzinfo=UTC)
_MAX = datetime.max.replace(tzinfo=UTC)


def _add_months(value: datetime, months: int) -> datetime:
    month = value.month - 1 + months
    return value.replace(year=value.year + month // 12, month=month % 12 + 1)


def parse_range(text: str, name: str = "date") -> tuple[datetime, datetime]:
    """The half-open range [low, high) a FHIR date/dateTime/instant value stands for."""
    match = _PATTERN.match(text)
    if match is None:
        raise bad_request(f"'{text}' is not a valid FHIR date or dateTime in '{name}'", name)
    g = match.groupdict()
    tz = UTC
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        low = datetime(
            int(g["y"]),
            int(g["m"] or 1),
            int(g["d"] or 1),
            int(g["H"] or 0),
            int(g["M"] or 0),
            int(g["S"] or 0),
            int((g["f"] or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
    except ValueError:
        raise bad_request(f"'{text}' is not a valid date in '{name}'", name) from None
    try:
        if g["f"]:
            high = low + timedelta(microseconds=10 ** max(0, 6 - len(g["f"])))
        elif g["S"]:
            high = low + timedelta(seconds=1)
        elif g["M"]:
            high = low + timedelta(minutes=1)
        elif g["d"]:
            high = low + timedelta(days=1)
        elif g["m"]:
            high = _add_months(low, 1)
        else:
            high = low.replace(year=low.year + 1)
    except (OverflowError, ValueError):  # past the year 9999
        high = _MAX
    return _utc(low), _utc(high)


def _utc(value: datetime) -> datetime:
    """`value` in UTC, held within the years 1 to 9999."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        return _MIN if value.year == 1 else _MAX


def parse_instant(text: str, name: str) -> datetime:
    """The start of a date/dateTime/instant value (for `_since`, `If-Modified-Since`-like use)."""
    return parse_range(text, name)[0]


@lru_cache(maxsize=16)
def format_instant(value: datetime) -> str:
    """A FHIR instant in UTC with microseconds, as Flöde writes meta.lastUpdated. (Cached: a
    load stamps every resource of a chunk with one time.)"""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
