"""String search parameters (https://hl7.org/fhir/R4/search.html#string).

Index rows live in `search_string` as (value, exact): `value` is the normalised text
(case-folded, accents stripped: "Östersund" → "ostersund"), cut to `MAX_INDEXED` characters so
it fits a btree row; `exact` is the text as written, for `:exact`. A search without modifier
matches values that start with the normalised search text, as a range on
`(resource_type, param, value text_pattern_ops)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.params.common import TOP, Node, like_escape
from flode.store.params.common import search as _search
from flode.store.sql import Args
from flode.text import normalise, unescape

TABLE = "search_string"
COLUMNS = ("value", "exact")
MAX_INDEXED = 256

StringRow = tuple[str, str]
"""(value, exact) as stored in `search_string`."""

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item for item in items if isinstance(item, str) and item.strip()]


def _parts(value: Any, names: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return []
    return [text for name in names if name in value for text in _strings(value[name])]


def rows(nodes: Iterable[Node]) -> list[StringRow]:
    """The `search_string` rows of a string parameter's values: each part of a HumanName
    (family, given, prefix, suffix, text) and an Address (line, city, district, state,
    postalCode, country, text) is a value of its own."""
    if not nodes:
        return []
    texts: list[str] = []
    for kind, value in nodes:
        if kind == "HumanName":
            texts.extend(_parts(value, _NAME_PARTS))
        elif kind == "Address":
            texts.extend(_parts(value, _ADDRESS_PARTS))
        else:  # string, markdown and the other string-like primitives
            texts.extend(_strings(value))
    return list(dict.fromkeys(_row(t) if len(t) <= MAX_INDEXED else _uncached(t) for t in texts))


@lru_cache(maxsize=8192)
def _row(text: str) -> StringRow:
    """Cached: names and places repeat, within a resource and across them. Only short texts are
    cached, so the cache stays small."""
    return _uncached(text)


def _uncached(text: str) -> StringRow:
    return normalise(text)[:MAX_INDEXED], text


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for one value: prefix (no modifier), `:exact` or
    `:contains`."""
    text = unescape(value)
    key = normalise(text)[:MAX_INDEXED]
    if not key:
        raise bad_request(f"Empty value in search parameter '{param}'", param)
    if modifier is None:
        return f"(i.value ~>=~ {args.add(key)} AND i.value ~<~ {args.add(key + TOP)})"
    if modifier == "exact":
        return f"(i.value = {args.add(key)} AND i.exact = {args.add(text)})"
    if modifier == "contains":
        return f"i.value LIKE {args.add('%' + like_escape(key) + '%')}"
    raise bad_request(f"Unknown modifier ':{modifier}' on string parameter '{param}'", param)


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
