"""URI search parameters (https://hl7.org/fhir/R4/search.html#uri).

Index rows live in `search_uri` as (value,): the URI exactly as written, indexed on
`(resource_type, param, value)`. Matching is exact by default; `:below` matches the URI and
everything under it (a prefix range on the index), `:above` the URI and every URI it lies
under (the query's own `/`-prefixes, looked up by equality). A URI longer than 512 bytes is
stored as its digest (token.indexed) and can then only be matched exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from flode.fhir.errors import bad_request
from flode.store.params.common import TOP, Node
from flode.store.params.common import search as _search
from flode.store.params.token import indexed
from flode.store.sql import Args
from flode.text import unescape

TABLE = "search_uri"
COLUMNS = ("value",)

UriRow = tuple[str]
"""(value,) as stored in `search_uri`."""


def rows(nodes: Iterable[Node]) -> list[UriRow]:
    """The `search_uri` rows of uri, url, canonical and oid/uuid values."""
    if not nodes:
        return []
    found = [(indexed(value),) for _, value in nodes if isinstance(value, str) and value]
    return list(dict.fromkeys(found))


def above(uri: str) -> list[str]:
    """`uri` and each URI above it: its prefixes ending just before a `/`, and with the `/`."""
    found = [uri]
    for i, char in enumerate(uri):
        if char == "/" and uri[:i] and not uri[:i].endswith((":", "/")):
            found += [uri[:i], uri[: i + 1]]
    return sorted(set(found))


def condition(param: str, modifier: str | None, value: str, args: Args) -> str:
    """The condition over index row `i` for one URI, exact, `:below` or `:above`."""
    uri = unescape(value)
    if not uri:
        raise bad_request(f"Empty value in search parameter '{param}'", param)
    if modifier is None:
        return f"i.value = {args.add(indexed(uri))}"
    if modifier == "below":
        return f"(i.value ~>=~ {args.add(uri)} AND i.value ~<~ {args.add(uri + TOP)})"
    if modifier == "above":
        return f"i.value = ANY({args.add([indexed(u) for u in above(uri)])}::text[])"
    raise bad_request(f"Unknown modifier ':{modifier}' on uri parameter '{param}'", param)


def search(param: str, modifier: str | None, raw: str, args: Args) -> str:
    """SQL over `resource r` for a whole (comma-separated) parameter value, or `:missing`."""
    return _search(TABLE, condition, param, modifier, raw, args)
