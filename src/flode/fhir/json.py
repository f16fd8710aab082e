"""FHIR JSON in and out, keeping decimals exactly as sent.

FHIR requires a decimal's precision to survive a round trip ("1.50" stays "1.50",
https://hl7.org/fhir/R4/json.html#primitive). orjson parses numbers into floats, which would
lose it, so a document that contains any non-integer number is parsed again with the standard
library, turning each such number into a `Decimal`: a float that remembers its source text.
orjson writes it back verbatim through `orjson.Fragment`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from flode.fhir.errors import bad_request


class Decimal(float):
    """A JSON number as it was written; compares and computes like a float."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Decimal:
        value = super().__new__(cls, text)
        value.text = text
        return value

    def __repr__(self) -> str:
        return self.text


# Deeper documents are refused: no FHIR resource nests this far, and orjson writes at most 254
# levels, so everything accepted can be written back.
MAX_DEPTH = 200
# orjson writes integers of at most 64 bits; larger ones are kept as `Decimal`s.
_INT_RANGE = range(-(2**63), 2**64)


def _has_float(value: Any) -> bool:
    """Whether `value` holds a non-integer number; a 400 if it nests deeper than MAX_DEPTH."""
    if isinstance(value, dict | list):
        return _floats_in(value, 1)
    return isinstance(value, float)


def _floats_in(node: dict[str, Any] | list[Any], depth: int) -> bool:
    """`_has_float` of an object or array at `depth` (the document is `1`), every nested one
    checked for its depth. (Hot: a large Bundle has a million values; exact type checks, and
    only containers recursed into.)"""
    if depth > MAX_DEPTH:
        raise bad_request(f"The JSON document nests deeper than {MAX_DEPTH} levels")
    found = False
    child: Any
    for child in node.values() if isinstance(node, dict) else node:
        kind = type(child)
        if kind is dict or kind is list:
            if _floats_in(child, depth + 1):
                found = True
        elif kind is float:
            found = True
    return found


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _int(text: str) -> int | Decimal:
    value = int(text)
    return value if value in _INT_RANGE else Decimal(text)


def loads(body: bytes | str) -> Any:
    """Parse JSON; raise a 400 FhirError for anything that is not a valid JSON document."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The body is not valid JSON: {exc}") from None
    if _has_float(value):
        value = json.loads(
            body, parse_float=Decimal, parse_int=_int, parse_constant=_reject_constant
        )
    return value


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(value.text)
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(value, default=_default, option=option)
