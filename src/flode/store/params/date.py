"""Date search parameters (https://hl7.org/fhir/R4/search.html#date).

Index rows live in `search_date` as (low, high): the half-open range [low, high) the value
stands for ("2026-03" is all of March 2026). A Period reaches from the start of its start to
the end of its end; an open end is the first or last representable instant
(0001-01-01T00:00Z, 9999-12-31T23:59:59.999999Z), the same bounds `parse_range` cuts ranges at,
so open ends compare like infinities. Prefixes are range comparisons (search.html#prefix).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from flode.fhir.dates import parse_range
from flode.fhir.errors import FhirError, bad_request
from flode.store.params.common import Node, split_prefix
from flode.store.params.common import search as _search
from flode.store.sql import Args
from flode.text import unescape

TABLE = "search_date"
COLUMNS = ("low", "high")
FIRST = datetime.min.replace(tzinfo=UTC)
LAST = datetime.max.replace(tzinfo=UTC)
# `ap`: the search range widened on both sides by this share of its distance from now, as the
# specification suggests (search.html#prefix).
APPROXIMATELY = 0.1
_DAY = timedelta(days=1)

DateRow = tuple[datetime, datetime]
"""(low, high) as stored in `search_date`."""


def _range(value: Any) -> DateRow | None:
    if not isinstance(value, str):
        return None
    # The longest valid value is an instant with nanoseconds and an offset; longer text is no
    # date and is not worth a cache entry.
    return _parsed(value) if len(value) <= 40 else _parse(value)


@lru_cache(maxsize=4096)
def _parsed(text: str) -> DateRow | None:
    """Cached: a resource repeats its dates (an Observation's effective time is in `date` and in
    its composites), and so do the resources of one encounter."""
    return _parse(text)


def _parse(text: str) -> DateRow | None:
    if len(text) == 10 and text[4] == text[7] == "-":
        # YYYY-MM-DD, the commonest form, without the general pattern.
        digits = text[:4] + text[5:7] + text[8:]
        if digits.isascii() and digits.isdigit():
            try:
                low = datetime(int(text[:4]), int(text[5:7]), int(text[8:]), tzinfo=UTC)
            except ValueError:
                return None
            return low, (low + _DAY if low.date() < LAST.date() else LAST)
    try:
        return parse_range(text)
    except FhirError:
        return None


def _period(value: Any) -> DateRow | None:
    if not isinstance(value, dict):
        return None
    start, end = _range(value.get("start")), _range(value.get("end"))
    if start is None and end is None:
        return None
    return (start[0] if start else FIRST, end[1] if end else LAST)


def _timing(value: Any) -> DateRow | None:
    """Only the outer limits of a schedule matter (search.html#date)."""
    if not isinstance(value, dict):
        return None
    events = value.get("event")
    found = [r for e in events if (r := _range(e))] if isinstance(events, list) else []
    repeat = value.get("repeat")
    if isinstance(repeat, dict) and (bounds := _period(repeat.get("boundsPeriod"))):
        found.append(bounds)
    if not found:
        return None
    return (min(low for low, _ in found), max(high for _, high in found))


def rows(nodes: Iterable[Node]) -> list[DateRow]:
    """The `search_date` rows of date, dateTime, instant, Period and Timing values."""
    if not nodes:
        return []
    found: list[DateRow] = []
    for kind, value in nodes:
        if kind == "Period":
            row = _period(value)
        elif kind == "Timing":
            row = _timing(value)
        else:
            row = _range(value)
        if row is not None:
            found.append(row)
    return list(dict.fromkeys(found))


def _widened(low: datetime, high: datetime) -> DateRow:
    now = datetime.now(UTC)
    distance = max(abs(now - low), abs(now - high)) * APPROXIMATELY
    try:
        low = low - distance
    except OverflowError:
        low = FIRST
    try:
        high = high + distance
    except OverflowError:
        high = LAST
    return low, high


def range_condition(
    prefix: str, low: datetime, high: datetime, args: Args, columns: str = "i.low i.high"
) -> str:
    """Index row range [i.low, i.high) against the search range [low, high) under `prefix`
    (search.html#prefix); `columns` names the row's low and high columns."""
    il, ih = columns.split()
    if prefix == "ap":
        low, high = _widened(low, high)
        return f"({il} < {args.add(high)} AND {ih} > {args.add(low)})"
    if prefix == "gt":
        return f"{ih} > {args.add(high)}"
    if prefix == "sa":
        return f"{il} >= {args.add(high)}"
    if prefix == "lt":
        return f"{il} < {args.add(low)}"
    if prefix == "eb":
        return f"{ih} <= {args.add(low)}"
    ql, qh = args.add(low), args.add(high)
    # low < qh follows from high <= qh; it bounds the index range scan on `low`.
    contained = f"({il} >= {ql} AND {il} < {qh} AND {ih} <= {qh})"
    if prefix == "eq":
        return contained
    if prefix == "ne":
        return f"NOT {contained}"
    if prefix == "ge":
        return f"({ih} > {qh} OR {contained})"
    return f"({il} < {ql} OR {contained})"  # le


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for one (possibly prefixed) date value."""
    if modifier is not None:
        raise bad_request(f"Unknown modifier ':{modifier}' on date parameter '{param}'", param)
    prefix, text = split_prefix(param, unescape(value))
    low, high = parse_range(text, param)
    return range_condition(prefix, low, high, args)


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
