"""How one value of each search parameter type matches one search value, per
https://hl7.org/fhir/R4/search.html (a section for each type). Plain Python over JSON values."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .parameters import Param


class Unsupported(Exception):
    """The evaluator was asked about something it does not model: a mistake in a test."""


# ---------------------------------------------------------------------------------------------
# Selecting element values (a small subset of FHIRPath: dotted paths, choice types, `|`).


def _children(value: Any, name: str) -> list[tuple[str | None, Any]]:
    """`name` of a JSON object; `name[x]` yields (type, value) for every `nameType` key."""
    if not isinstance(value, dict):
        return []
    if name.endswith("[x]"):
        stem = name[:-3]
        found: list[tuple[str | None, Any]] = []
        for key, item in value.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                kind = key[len(stem) :]
                found += [(kind, i) for i in (item if isinstance(item, list) else [item])]
        return found
    item = value.get(name)
    if item is None:
        return []
    return [(None, i) for i in (item if isinstance(item, list) else [item])]


def select(resource: Any, path: str) -> list[tuple[str | None, Any]]:
    """The values of `path` ("name.family", "value[x]:Quantity", "code | component.code") as
    (choice type or None, value) pairs. A `:Type` suffix keeps one type of a choice, named as
    the JSON key spells it ("DateTime", "Quantity")."""
    out: list[tuple[str | None, Any]] = []
    for alternative in path.split("|"):
        alternative = alternative.strip()
        alternative, _, only = alternative.partition(":")
        nodes: list[tuple[str | None, Any]] = [(None, resource)]
        for step in alternative.split(".") if alternative else []:
            nodes = [child for _, node in nodes for child in _children(node, step)]
        if only:
            nodes = [(kind, node) for kind, node in nodes if kind == only]
        out += nodes
    return out


# ---------------------------------------------------------------------------------------------
# Strings (search.html#string): case- and accent-insensitive "equals or starts with".


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):  # HumanName, Address: every string part
        parts: list[str] = []
        for key in ("text", "family", "given", "prefix", "suffix", "line", "city", "district"):
            parts += _strings_of(value.get(key))
        for key in ("state", "postalCode", "country"):
            parts += _strings_of(value.get(key))
        return parts
    return []


def _strings_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def split_escaped(raw: str, separator: str) -> list[str]:
    """Splits at the separators not escaped with a backslash (search.html#escaping: `\\,`
    `\\$` `\\|` `\\\\`), keeping the escapes for the next level."""
    parts: list[str] = []
    current, escaped = "", False
    for char in raw:
        if escaped:
            current, escaped = current + "\\" + char, False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts, current = [*parts, current], ""
        else:
            current += char
    return [*parts, current + ("\\" if escaped else "")]


def unescape(part: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", part)


def string_matches(text: str, modifier: str | None, query: str) -> bool:
    query = unescape(query)
    if modifier == "exact":
        return text == query
    if modifier == "contains":
        return normalise(query) in normalise(text)
    if modifier is None:
        return normalise(text).startswith(normalise(query))
    raise Unsupported(f"string modifier {modifier}")


# ---------------------------------------------------------------------------------------------
# Tokens (search.html#token).


@dataclass(frozen=True)
class Token:
    system: str | None
    code: str | None
    texts: tuple[str, ...] = ()
    of_types: tuple[tuple[str | None, str | None], ...] = ()


def tokens(value: Any) -> list[Token]:
    if isinstance(value, bool):
        return [Token(None, "true" if value else "false")]
    if isinstance(value, str):
        return [Token(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
        text = (value["text"],) if "text" in value else ()
        codings = value.get("coding", [])
        found = [
            Token(
                c.get("system"), c.get("code"), text + ((c["display"],) if "display" in c else ())
            )
            for c in codings
        ]
        return found or [Token(None, None, text)]
    if "value" in value:  # Identifier
        kind = value.get("type", {})
        return [
            Token(
                value.get("system"),
                value["value"],
                (kind["text"],) if "text" in kind else (),
                tuple((c.get("system"), c.get("code")) for c in kind.get("coding", [])),
            )
        ]
    if "code" in value or "system" in value:  # Coding
        display = (value["display"],) if "display" in value else ()
        return [Token(value.get("system"), value.get("code"), display)]
    return []


def split_bar(raw: str) -> list[str]:
    return [unescape(part) for part in split_escaped(raw, "|")]


def token_matches(token: Token, modifier: str | None, query: str) -> bool:
    if modifier == "text":
        return any(string_matches(t, None, query) for t in token.texts)
    if modifier == "of-type":
        system, code, value = split_bar(query)
        return (system, code) in token.of_types and token.code == value
    if modifier not in (None, "not"):
        raise Unsupported(f"token modifier {modifier}")
    if "|" not in query:
        return token.code == query
    system, code = split_bar(query)
    if system == "":
        return token.system is None and token.code == code
    if code == "":
        return token.system == system
    return token.system == system and token.code == code


# ---------------------------------------------------------------------------------------------
# Dates (search.html#date): every value is a range [low, high) at its precision.

Instant = float
"""Microseconds since 1970 in UTC; ±inf for a Period's missing end."""

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> Instant:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def date_range(text: str) -> tuple[Instant, Instant]:
    """A date, dateTime or instant as the range it stands for. Without a time zone the time is
    taken as UTC (the specification leaves the zone of such a search value to the server)."""
    match = _DATE.match(text)
    if match is None:
        raise Unsupported(f"date {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if month is None:
        return micros(datetime(int(year), 1, 1, tzinfo=UTC)), micros(
            datetime(int(year) + 1, 1, 1, tzinfo=UTC)
        )
    if day is None:
        start = datetime(int(year), int(month), 1, tzinfo=UTC)
        following = datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=UTC)
        return micros(start), micros(following)
    if hour is None:
        start = datetime(int(year), int(month), int(day), tzinfo=UTC)
        return micros(start), micros(start + timedelta(days=1))
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    start = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
    )
    low = micros(start - offset)
    if second is None:
        return low, low + 60_000_000
    if fraction is None:
        return low, low + 1_000_000
    digits = fraction[:6]
    step = 10 ** (6 - len(digits))
    return low + int(digits) * step, low + int(digits) * step + step


def date_ranges(kind: str | None, value: Any) -> list[tuple[Instant, Instant]]:
    if isinstance(value, str):
        return [date_range(value)]
    if isinstance(value, dict) and ("start" in value or "end" in value):  # Period
        low = date_range(value["start"])[0] if "start" in value else float("-inf")
        high = date_range(value["end"])[1] if "end" in value else float("inf")
        return [(low, high)]
    raise Unsupported(f"date value of type {kind}: {value!r}")


PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in PREFIXES and not raw[:2].isdigit():
        return raw[:2], raw[2:]
    return "eq", raw


def range_compare(
    prefix: str, target: tuple[Any, Any], search: tuple[Any, Any], now: Any = None
) -> tuple[bool, bool]:
    """search.html#prefix for a target range [l, h) and a search range [ql, qh), as
    (must match, may match): they differ only for `ap`."""
    low, high = target
    q_low, q_high = search
    contains = q_low <= low and high <= q_high
    result = {
        "eq": contains,
        "ne": not contains,
        "gt": high > q_high,  # the range above the search value intersects the target's
        "lt": low < q_low,  # the range below the search value intersects the target's
        "ge": high > q_high or contains,
        "le": low < q_low or contains,
        "sa": low >= q_high,  # no overlap, and the range above contains the target's
        "eb": high <= q_low,
    }.get(prefix)
    if result is not None:
        return result, result
    if prefix == "ap":
        overlaps = low < q_high and q_low < high
        return overlaps, low < q_high + now and q_low - now < high
    raise Unsupported(f"prefix {prefix}")


# ---------------------------------------------------------------------------------------------
# Numbers and quantities (search.html#number, #quantity).


def decimal_range(value: Decimal) -> tuple[Decimal, Decimal]:
    """The implicit range of a decimal as written: 100 is [99.5, 100.5)."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), value
    half = Decimal(1).scaleb(exponent) / 2
    return value - half, value + half


def number_compare(prefix: str, target: Decimal, query: Decimal) -> tuple[bool, bool]:
    """`gt lt ge le` compare with the search value exactly ("gt100: greater than exactly 100");
    `eq ne sa eb` with the ranges both values stand for; `ap` within 10 %."""
    exact = {
        "gt": target > query,
        "lt": target < query,
        "ge": target >= query,
        "le": target <= query,
    }.get(prefix)
    if exact is not None:
        return exact, exact
    if prefix == "ap":
        q_low, q_high = decimal_range(query)
        margin = abs(query) / 10
        low, high = decimal_range(target)
        return q_low <= low and high <= q_high, low < q_high + margin and q_low - margin < high
    return range_compare(prefix, decimal_range(target), decimal_range(query))


def as_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise Unsupported(f"number {value!r}")


def quantity_compare(value: Any, query: str) -> tuple[bool, bool]:
    prefix, rest = split_prefix(query)
    number, *unit = split_bar(rest)
    if not isinstance(value, dict) or "value" not in value:
        return False, False
    if unit:
        system, code = unit
        if system and (value.get("system") != system or value.get("code") != code):
            return False, False
        if not system and code not in (value.get("code"), value.get("unit")):
            return False, False
    return number_compare(prefix, as_decimal(value["value"]), Decimal(number))


# ---------------------------------------------------------------------------------------------
# References (search.html#reference).


def reference_parts(value: Any) -> tuple[str, str] | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        kind, _, id = value["reference"].partition("/")
        if id and "/" not in id:
            return kind, id
    return None


def reference_matches(
    parts: tuple[str, str], param: Param, modifier: str | None, query: str
) -> bool:
    kind, id = parts
    if param.targets and kind not in param.targets:
        return False
    if modifier is not None and not modifier[:1].isupper():
        raise Unsupported(f"reference modifier {modifier}")
    if modifier is not None and kind != modifier:
        return False
    if "/" in query:
        return (kind, id) == tuple(query.split("/", 1))
    return id == query
