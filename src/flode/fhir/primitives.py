"""Checks for the JSON values of FHIR primitive datatypes.

https://hl7.org/fhir/R4/datatypes.html#primitive gives each type a regex (carried in the
definitions) and https://hl7.org/fhir/R4/json.html#primitive its JSON type: booleans are JSON
booleans, integer and decimal types JSON numbers, everything else a non-empty JSON string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from flode.fhir.definitions import Primitive
from flode.fhir.json import Decimal

# A check returns None for a valid value, otherwise why it is not.
Check = Callable[[object], str | None]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INTEGER_RANGES = {
    "integer": (INT32_MIN, INT32_MAX),
    "positiveInt": (1, INT32_MAX),
    "unsignedInt": (0, INT32_MAX),
}
DATE_TYPES = frozenset({"date", "dateTime", "instant"})

# Strings "SHALL NOT contain Unicode character points below 32, except for u0009 (horizontal
# tab), u0010 (carriage return) and u0013 (line feed)" (datatypes.html#string).
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
STRING_REGEX = r"[ \r\n\t\S]+"
# The spec's base64Binary regex `(\s*([0-9a-zA-Z\+/=]){4}\s*)+` backtracks exponentially on a
# long invalid value with many line breaks; this one accepts the same language in linear time.
OWN_REGEXES = {"base64Binary": r"(?:[ \t\n\r]*+[0-9a-zA-Z+/=]{4})++[ \t\n\r]*+"}
# Types whose spec regex any printable non-empty string matches.
TEXT_TYPES = frozenset({"string", "markdown"})

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def spec_pattern(regex: str) -> re.Pattern[str]:
    """Compile a spec regex (XML Schema dialect: implicitly anchored; use with fullmatch).

    In XML Schema `\\s` is only space, tab, CR and LF, so any other character, including
    non-ASCII spaces, is `\\S`; re.ASCII comes closest (it also counts FF and VT as spaces,
    which strings may not contain anyway). Groups become non-capturing: nothing reads them,
    and capturing makes Python's matcher twice as slow on the date patterns.
    """
    return re.compile(_without_captures(regex), re.ASCII)


def _without_captures(regex: str) -> str:
    out: list[str] = []
    i, in_class = 0, False
    while i < len(regex):
        char = regex[i]
        if char == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(" and regex[i + 1 : i + 2] != "?":
            char = "(?:"
        out.append(char)
        i += 1
    return "".join(out)


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_real_date(text: str) -> bool:
    """Whether the day of a `YYYY-MM-DD...` value exists (the regex allows 2019-02-31)."""
    day = text[8:10]
    if day < "29":
        return True
    year, month = int(text[0:4]), int(text[5:7])
    if month == 2 and day == "29":
        return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return int(day) <= _DAYS_IN_MONTH[month - 1]


def checker(primitive: Primitive) -> Check:
    """The check for values of one primitive type."""
    name = primitive.name
    if primitive.json_kind == "boolean":
        return _boolean
    if name in INTEGER_RANGES:
        low, high = INTEGER_RANGES[name]
        return _integer(name, low, high)
    if primitive.json_kind == "number":
        return _decimal(spec_pattern(primitive.regex or r"-?[0-9.eE+]+"))
    if name == "xhtml":
        return _xhtml
    pattern = spec_pattern(OWN_REGEXES.get(name) or primitive.regex or STRING_REGEX)
    return _string(name, pattern, text=name in TEXT_TYPES, dates=name in DATE_TYPES)


def _boolean(value: object) -> str | None:
    if type(value) is bool:
        return None
    return f"A boolean must be JSON true or false, not {shown(value)}"


def _integer(name: str, low: int, high: int) -> Check:
    def check(value: object) -> str | None:
        if type(value) is int:
            if low <= value <= high:
                return None
            return f"The value {value} is out of range for {name} ({low}..{high})"
        if isinstance(value, float):
            return f"A value of type {name} must be a whole JSON number, not {shown(value)}"
        return f"A value of type {name} must be a JSON number, not {shown(value)}"

    return check


def _decimal(pattern: re.Pattern[str]) -> Check:
    fullmatch = pattern.fullmatch

    def check(value: object) -> str | None:
        if type(value) is int:
            return None
        if isinstance(value, Decimal):
            if fullmatch(value.text) is not None and math.isfinite(value):
                return None
            return f"The value {value.text} is not a valid decimal"
        if isinstance(value, float):
            return None if math.isfinite(value) else f"The value {value} is not a valid decimal"
        return f"A decimal must be a JSON number, not {shown(value)}"

    return check


def _string(name: str, pattern: re.Pattern[str], *, text: bool, dates: bool) -> Check:
    fullmatch = pattern.fullmatch

    def problem(value: object) -> str | None:
        if type(value) is not str:
            return f"A value of type {name} must be a JSON string, not {shown(value)}"
        if not value:
            return f"A value of type {name} must not be an empty string"
        if CONTROL_CHARACTER.search(value) is not None:
            return f"The value {shown(value)} contains a control character"
        if fullmatch(value) is None:
            return f"The value {shown(value)} is not a valid {name}"
        if dates and not is_real_date(value):
            return f"The value {shown(value)} is not a real calendar date"
        return None

    # Fast paths for the common case; anything they do not accept gets the full check.
    # A printable string has no control character (nor tab, CR, LF or non-ASCII spaces).
    if text:

        def check_text(value: object) -> str | None:
            if type(value) is str and value and value.isprintable():
                return None
            return problem(value)

        return check_text

    if dates:

        def check_date(value: object) -> str | None:
            if type(value) is str and fullmatch(value) is not None and is_real_date(value):
                return None
            return problem(value)

        return check_date

    def check(value: object) -> str | None:
        if type(value) is str and value and value.isprintable() and fullmatch(value) is not None:
            return None
        return problem(value)

    return check


def _xhtml(value: object) -> str | None:
    # Narrative is XHTML in a <div> (narrative.html#xhtml); its content is not parsed here.
    if type(value) is not str:
        return f"Narrative xhtml must be a JSON string, not {shown(value)}"
    if not value.lstrip().startswith("<div"):
        return "Narrative xhtml must be a <div> element"
    return None
