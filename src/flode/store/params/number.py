"""Number search parameters (https://hl7.org/fhir/R4/search.html#number).

Index rows live in `search_quantity` with no system, code or unit: (value, low, high) where
[low, high) is the range the value's significant digits imply ("100" is [99.5, 100.5), "1.50"
is [1.495, 1.505), "1e2" is [50, 150)). Integers are exact: low = high = value. The same range
logic serves quantity (quantity.py).

Prefix semantics: `eq` (the default) matches when the search range contains the value's range,
so `5.4` ([5.35, 5.45)) matches 5.40 and 5.449 but not 5.35 ([5.345, 5.355)); `ne` is its
negation; `gt lt ge le` compare with the exact search value ("gt100: greater than exactly
100", search.html#number); `sa`/`eb` start after / end before the search range; `ap` overlaps
the search value ±10% (at least its precision range).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Context, Decimal
from functools import lru_cache
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.params.common import Node, split_prefix
from flode.store.params.common import search as _search
from flode.store.sql import Args
from flode.text import unescape

TABLE = "search_quantity"
_DECIMAL = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
# Far beyond any measured value, well within PostgreSQL numeric; keeps arithmetic exact.
_MAX_EXPONENT = 1000
_CONTEXT = Context(prec=2 * _MAX_EXPONENT + 50)
_INTEGERS = ("integer", "positiveInt", "unsignedInt", "integer64")
APPROXIMATELY = Decimal("0.1")

COLUMNS = ("system", "code", "unit", "value", "low", "high")
QuantityRow = tuple[str | None, str | None, str | None, Decimal | None, Decimal, Decimal]
"""(system, code, unit, value, low, high) as stored in `search_quantity`; numbers have no
system, code or unit."""
NumberRow = tuple[Decimal, Decimal, Decimal]
"""(value, low, high) of one number."""


def parse(text: str) -> Decimal | None:
    """The exact decimal `text` stands for, or None when it is not a FHIR decimal."""
    if not _DECIMAL.match(text):
        return None
    number = Decimal(text)
    return number if abs(number.adjusted()) <= _MAX_EXPONENT else None


def precision_range(number: Decimal) -> tuple[Decimal, Decimal]:
    """[low, high): the values that round to `number` at its significant digits."""
    half = Decimal((0, (5,), int(number.as_tuple().exponent) - 1))
    return _CONTEXT.subtract(number, half), _CONTEXT.add(number, half)


def number_text(value: Any) -> str | None:
    """The exact text of a JSON number (`flode.fhir.json.Decimal` remembers it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)


def number_row(kind: str, value: Any) -> NumberRow | None:
    text = number_text(value)
    if text is None:
        return None
    integer = kind in _INTEGERS
    return _cached_row(text, integer) if len(text) <= 40 else _row(text, integer)


@lru_cache(maxsize=4096)
def _cached_row(text: str, integer: bool) -> NumberRow | None:
    """Cached: an Observation's value is indexed under its quantity parameter and again under
    each composite that has it. (Long texts are not worth an entry.)"""
    return _row(text, integer)


def _row(text: str, integer: bool) -> NumberRow | None:
    number = parse(text)
    if number is None:
        return None
    if integer:
        return number, number, number
    low, high = precision_range(number)
    return number, low, high


def rows(nodes: Iterable[Node]) -> list[QuantityRow]:
    """The `search_quantity` rows of decimal and integer values."""
    if not nodes:
        return []
    found = [(None, None, None, *row) for kind, value in nodes if (row := number_row(kind, value))]
    return list(dict.fromkeys(found))


def parse_value(param: str, text: str) -> Decimal:
    number = parse(text)
    if number is None:
        raise bad_request(f"'{text}' is not a valid number in search parameter '{param}'", param)
    return number


def range_condition(prefix: str, number: Decimal, args: Args) -> str:
    """Index row `i` (value, low, high) against the search value `number` under `prefix`.
    A row without a value (a Range) compares by its bounds."""
    low, high = precision_range(number)
    if prefix in ("gt", "ge"):
        op = ">" if prefix == "gt" else ">="
        return f"COALESCE(i.value, i.high) {op} {args.add(number)}"
    if prefix in ("lt", "le"):
        op = "<" if prefix == "lt" else "<="
        return f"COALESCE(i.value, i.low) {op} {args.add(number)}"
    if prefix == "sa":
        return f"i.low >= {args.add(high)}"
    if prefix == "eb":
        return f"i.high <= {args.add(low)}"
    if prefix == "ap":
        margin = abs(_CONTEXT.multiply(number, APPROXIMATELY))
        low = min(low, _CONTEXT.subtract(number, margin))
        high = max(high, _CONTEXT.add(number, margin))
        return f"(i.low < {args.add(high)} AND i.high > {args.add(low)})"
    ql, qh = args.add(low), args.add(high)
    # i.low < qh bounds the index range scan on `low`; for an exact value (low = high) it also
    # keeps the search range half-open.
    contained = f"(i.low >= {ql} AND i.low < {qh} AND i.high <= {qh})"
    return f"NOT {contained}" if prefix == "ne" else contained


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for one (possibly prefixed) number."""
    if modifier is not None:
        raise bad_request(f"Unknown modifier ':{modifier}' on number parameter '{param}'", param)
    prefix, text = split_prefix(param, unescape(value))
    return range_condition(prefix, parse_value(param, text), args)


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
