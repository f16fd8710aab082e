"""Reference search parameters (https://hl7.org/fhir/R4/search.html#reference).

Index rows live in `search_reference` as (target_type, target_id, url, identifier_system,
identifier_value). `Patient/123` (a version `/_history/n` removed) gives type and id; an
absolute URL is kept in `url` and, when it ends in `…/Type/id`, also gives type and id, so
`subject=Patient/123` matches `http://any.server/fhir/Patient/123` too. A canonical or uri value
is a `url` with its `|version` removed. Reference.identifier serves `:identifier`. Indexed both
ways: `(resource_type, param, target_id)` from the referring side and
`(target_type, target_id, param)` for `_revinclude`, `_has` and compartments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.params.common import Node
from flode.store.params.common import search as _search
from flode.store.params.token import indexed
from flode.store.sql import Args
from flode.text import split_escaped, unescape

TABLE = "search_reference"
COLUMNS = ("target_type", "target_id", "url", "identifier_system", "identifier_value")

ReferenceRow = tuple[str | None, str | None, str | None, str | None, str | None]
"""(target_type, target_id, url, identifier_system, identifier_value)."""

_TYPE_ID = r"(?P<type>[A-Z][A-Za-z]{1,63})/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?"
_RELATIVE = re.compile(rf"^{_TYPE_ID}$")
_ABSOLUTE = re.compile(rf"^(?P<base>[A-Za-z][A-Za-z0-9+.\-]*://.*?)/{_TYPE_ID}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


def parse(reference: str) -> tuple[str | None, str | None, str | None]:
    """(target_type, target_id, url) of a reference, with any version removed."""
    if match := _RELATIVE.match(reference):
        return match["type"], match["id"], None
    if match := _ABSOLUTE.match(reference):
        url = f"{match['base']}/{match['type']}/{match['id']}"
        return match["type"], match["id"], url
    return None, None, reference


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _reference(value: Any) -> ReferenceRow | None:
    if not isinstance(value, dict):
        return None
    kind, id, url = None, None, None
    reference = _str(value.get("reference"))
    if reference and not reference.startswith("#") and "?" not in reference:
        kind, id, url = parse(reference)
    kind = kind or _str(value.get("type"))
    identifier = value.get("identifier")
    system = number = None
    if isinstance(identifier, dict) and (number := _str(identifier.get("value"))):
        system = _str(identifier.get("system"))
    if id is None and url is None and number is None:
        return None
    return (
        kind,
        id,
        indexed(url) if url else None,
        indexed(system) if system else None,
        indexed(number) if number else None,
    )


def row_of(value: Any) -> ReferenceRow | None:
    """The index row of one Reference value; None if it names nothing."""
    return _reference(value)


def _canonical(value: Any) -> ReferenceRow | None:
    text = _str(value)
    if text is None:
        return None
    kind, id, url = parse(text.partition("|")[0])
    return kind, id, indexed(url) if url else None, None, None


def rows(nodes: Iterable[Node]) -> list[ReferenceRow]:
    """The `search_reference` rows of Reference, canonical and uri values."""
    if not nodes:
        return []
    found: list[ReferenceRow] = []
    for kind, value in nodes:
        row = _reference(value) if kind == "Reference" else _canonical(value)
        if row is not None:
            found.append(row)
    return list(dict.fromkeys(found))


def _identifier(param: str, value: str, args: Args) -> str:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) > 2 or not parts[-1]:
        raise bad_request(f"'{param}:identifier' takes [system|]value, not '{value}'", param)
    found = f"i.identifier_value = {args.add(indexed(parts[-1]))}"
    if len(parts) == 2:
        found += (
            f" AND i.identifier_system = {args.add(indexed(parts[0]))}"
            if parts[0]
            else " AND i.identifier_system IS NULL"
        )
    return found


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for one value: `id`, `Type/id`, an absolute URL or
    canonical (`|version` ignored), with the `:Type` and `:identifier` modifiers."""
    if modifier == "identifier":
        return _identifier(param, value, args)
    if modifier is not None and not _TYPE.match(modifier):
        raise bad_request(f"The modifier ':{modifier}' is not supported ('{param}')", param)
    text = unescape(value)
    if _ID.match(text):
        found = f"i.target_id = {args.add(text)}"
        if modifier:
            found += f" AND i.target_type = {args.add(modifier)}"
        return found
    target = text.partition("|")[0]
    kind, id, url = parse(target)
    if modifier and kind and kind != modifier:
        raise bad_request(f"'{value}' is not a {modifier} reference ('{param}')", param)
    if url is not None and ":" in target:
        return f"i.url = {args.add(indexed(url))}"
    if kind is None or id is None:
        raise bad_request(f"'{value}' is not a valid reference in '{param}'", param)
    return f"i.target_type = {args.add(kind)} AND i.target_id = {args.add(id)}"


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
