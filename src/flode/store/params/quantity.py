"""Quantity search parameters (https://hl7.org/fhir/R4/search.html#quantity).

Index rows live in `search_quantity` as (system, code, unit, value, low, high): the value with
the range its significant digits imply, as for numbers (number.py), and the unit's system,
code and human-readable unit. A Range is one row without a value: [low.value, high.value] with
open ends far beyond any measurement. Units are compared as written: no UCUM conversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.params import number
from flode.store.params.common import Node, split_prefix
from flode.store.params.common import search as _search
from flode.store.params.number import COLUMNS, QuantityRow
from flode.store.params.token import indexed
from flode.store.sql import Args
from flode.text import split_escaped, unescape

__all__ = ["COLUMNS", "TABLE", "condition", "rows", "search"]

TABLE = "search_quantity"
CURRENCIES = "urn:iso:std:iso:4217"
_OPEN = Decimal("1e1000")
_QUANTITIES = ("Quantity", "SimpleQuantity", "Age", "Duration", "Count", "Distance")


def _str(value: Any) -> str | None:
    return indexed(value) if isinstance(value, str) and value else None


def _units(value: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    return _str(value.get("system")), _str(value.get("code")), _str(value.get("unit"))


def _quantity(value: Any) -> QuantityRow | None:
    if not isinstance(value, dict):
        return None
    found = number.number_row("decimal", value.get("value"))
    return (*_units(value), *found) if found else None


def _money(value: Any) -> QuantityRow | None:
    if not isinstance(value, dict):
        return None
    found = number.number_row("decimal", value.get("value"))
    currency = _str(value.get("currency"))
    return (CURRENCIES if currency else None, currency, None, *found) if found else None


def _range(value: Any) -> QuantityRow | None:
    if not isinstance(value, dict):
        return None
    low, high = value.get("low"), value.get("high")
    low_row, high_row = _quantity(low), _quantity(high)
    if low_row is None and high_row is None:
        return None
    units = (low_row or high_row or (None, None, None))[:3]
    return (
        units[0],
        units[1],
        units[2],
        None,
        low_row[3] if low_row and low_row[3] is not None else -_OPEN,
        high_row[3] if high_row and high_row[3] is not None else _OPEN,
    )


def rows(nodes: Iterable[Node]) -> list[QuantityRow]:
    """The `search_quantity` rows of Quantity (and its profiles), Money, Range and numbers."""
    if not nodes:
        return []
    found: list[QuantityRow] = []
    for kind, value in nodes:
        if kind in _QUANTITIES:
            row = _quantity(value)
        elif kind == "Money":
            row = _money(value)
        elif kind == "Range":
            row = _range(value)
        else:
            row = (None, None, None, *n) if (n := number.number_row(kind, value)) else None
        if row is not None:
            found.append(row)
    return list(dict.fromkeys(found))


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for `[prefix]number`, `[prefix]number|system|code`
    or `[prefix]number||code` (code or unit)."""
    if modifier is not None:
        raise bad_request(f"Unknown modifier ':{modifier}' on quantity parameter '{param}'", param)
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) not in (1, 3):
        raise bad_request(f"'{value}' in '{param}' is neither number nor number|system|code", param)
    prefix, text = split_prefix(param, parts[0])
    found = number.range_condition(prefix, number.parse_value(param, text), args)
    if len(parts) == 3:
        system, code = parts[1], parts[2]
        if system:
            found += f" AND i.system = {args.add(indexed(system))}"
        if code and system:
            found += f" AND i.code = {args.add(indexed(code))}"
        elif code:
            placeholder = args.add(indexed(code))
            found += f" AND (i.code = {placeholder} OR i.unit = {placeholder})"
    return found


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
