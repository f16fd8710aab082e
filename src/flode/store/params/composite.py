"""Composite search parameters (https://hl7.org/fhir/R4/search.html#composite), such as
Observation `code-value-quantity=http://loinc.org|8480-6$gt140`.

Index rows live in `search_composite`, one per combination of the component values of the SAME
composite element (one Observation.component, not any code with any value of the resource):
(system, code, value_system, value_code, unit, value, low, high, date_low, date_high). The first
component is a token (system, code); the second is a token (value_system, value_code), a string
(value_code, normalised), a quantity or number (value_system and value_code are its unit system
and code; unit, value, low, high as in quantity.py) or a date (date_low, date_high).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from flode.fhir.dates import parse_range
from flode.fhir.errors import bad_request
from flode.store.params import date, number, quantity, string, token
from flode.store.params.common import Node, exists, like_escape, missing, split_prefix
from flode.store.params.token import indexed
from flode.store.sql import Args
from flode.text import normalise, split_escaped, unescape

TABLE = "search_composite"
COLUMNS = (
    "system",
    "code",
    "value_system",
    "value_code",
    "unit",
    "value",
    "low",
    "high",
    "date_low",
    "date_high",
)
SECOND = ("token", "string", "quantity", "number", "date")

Component = tuple[str, Iterable[Node]]
"""(search-parameter type of the component, the nodes its expression yields on the element)."""
_Value = tuple[
    str | None,
    str | None,
    str | None,
    Decimal | None,
    Decimal | None,
    Decimal | None,
    datetime | None,
    datetime | None,
]
# The first component's (system, code), then the second component's value.
CompositeRow = tuple[str | None, str | None, *_Value]


def codes(nodes: Iterable[Node]) -> list[tuple[str | None, str | None]]:
    """The (system, code) pairs of the first component's values."""
    return [(s, c) for s, c, *_ in token.rows(nodes) if c]


def values(kind: str, nodes: Iterable[Node]) -> list[_Value]:
    """The second component's values, as the last eight columns of a row."""
    if kind == "token":
        return [(s, c, None, None, None, None, None, None) for s, c, *_ in token.rows(nodes) if c]
    if kind == "string":
        return [(None, v, None, None, None, None, None, None) for v, _ in string.rows(nodes)]
    if kind in ("quantity", "number"):
        return [(*row, None, None) for row in quantity.rows(nodes)]
    if kind == "date":
        return [(None,) * 6 + (low, high) for low, high in date.rows(nodes)]
    return []


def rows(elements: Iterable[Sequence[Component]]) -> list[CompositeRow]:
    """The `search_composite` rows of each composite element, given its two components."""
    found: list[CompositeRow] = []
    for element in elements:
        if len(element) != 2 or element[0][0] != "token":
            continue
        found.extend(combine(codes(element[0][1]), values(*element[1])))
    return list(dict.fromkeys(found))


def combine(first: list[tuple[str | None, str | None]], second: list[_Value]) -> list[CompositeRow]:
    """The rows of one composite element: each code with each value."""
    return [f + s for f in first for s in second]


def _second(param: str, kind: str, value: str, args: Args) -> str:
    if kind == "token":
        return token.match(param, value, args, "i.value_system i.value_code")
    if kind == "string":
        key = normalise(unescape(value))[: string.MAX_INDEXED]
        return f"i.value_code LIKE {args.add(like_escape(key) + '%')}"
    if kind == "date":
        prefix, text = split_prefix(param, unescape(value))
        low, high = parse_range(text, param)
        return date.range_condition(prefix, low, high, args, "i.date_low i.date_high")
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) not in (1, 3):
        raise bad_request(f"'{value}' in '{param}' is neither number nor number|system|code", param)
    prefix, text = split_prefix(param, parts[0])
    found = number.range_condition(prefix, number.parse_value(param, text), args)
    if len(parts) == 3 and parts[1]:
        found += f" AND i.value_system = {args.add(indexed(parts[1]))}"
    if len(parts) == 3 and parts[2]:
        code = args.add(indexed(parts[2]))
        found += f" AND (i.value_code = {code} OR i.unit = {code})"
    return found


def condition(param: str, components: Sequence[str], value: str, args: Args) -> str:
    """The condition over index row `i` for one `first$second` value."""
    parts = split_escaped(value, "$")
    if len(parts) != 2 or len(components) != 2 or components[1] not in SECOND:
        raise bad_request(f"'{value}' is not a valid value of composite '{param}'", param)
    first = token.match(param, parts[0], args)
    return f"({first}) AND ({_second(param, components[1], parts[1], args)})"


def search(
    param: str, components: Sequence[str], modifier: str | None, raw: str, args: Args
) -> str:
    """SQL over `resource r` for a whole (comma-separated) value; `components` are the types of
    the parameter's components, e.g. ("token", "quantity")."""
    if modifier == "missing":
        return missing(TABLE, param, raw, args)
    if modifier is not None:
        raise bad_request(f"Unknown modifier ':{modifier}' on composite '{param}'", param)
    ors = [condition(param, components, v, args) for v in split_escaped(raw, ",")]
    return exists(TABLE, param, " OR ".join(f"({c})" for c in ors), args)
