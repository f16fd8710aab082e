"""`_sort` (https://hl7.org/fhir/R4/search.html#sort): an ORDER BY over `resource r`.

A resource can hold several values of one parameter; it sorts by its lowest value ascending and
by its highest value descending, as the spec asks for dates ("the lowest/highest value of the
period"). Resources without a value sort last either way. Ties keep the engine's stable order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flode.fhir.errors import bad_request
from flode.fhir.search_parameters import SearchParameters
from flode.fhir.search_query import SortKey
from flode.store.indexer import MODULES
from flode.store.search import Hidden
from flode.store.sql import Literals, quoted

# Per parameter type: the value an index row `i` sorts by, ascending and descending.
_KEYS: Mapping[str, tuple[str, str]] = {
    "string": ("i.value", "i.value"),
    "token": ("i.code", "i.code"),
    "uri": ("i.value", "i.value"),
    "date": ("i.low", "i.high"),
    "number": ("coalesce(i.value, i.low)", "coalesce(i.value, i.high)"),
    "quantity": ("coalesce(i.value, i.low)", "coalesce(i.value, i.high)"),
    "reference": (
        "coalesce(i.target_type || '/' || i.target_id, i.url)",
        "coalesce(i.target_type || '/' || i.target_id, i.url)",
    ),
}
# Parameters that are columns of `resource`.
_COLUMNS: Mapping[str, str] = {"_id": "r.id", "_lastUpdated": "r.last_updated"}


def _kind(registry: SearchParameters, types: Sequence[str], code: str) -> str:
    """The parameter's type, which must be the same for every type searched."""
    kinds = set()
    for resource_type in types:
        param = registry.get(resource_type, code)
        if param is None:
            raise bad_request(
                f"Cannot sort by '{code}': it is not a search parameter of {resource_type}",
                "_sort",
            )
        kinds.add(param.type)
    if len(kinds) != 1 or (kind := kinds.pop()) not in _KEYS:
        raise bad_request(f"Cannot sort by '{code}': its values have no order", "_sort")
    return kind


def order_by(
    registry: SearchParameters,
    types: Sequence[str],
    keys: Sequence[SortKey],
    hidden: Hidden | None = None,
) -> str:
    """The ORDER BY terms for `keys` (empty for none). They hold no placeholders, so a count of
    the same search can share its arguments: the codes are the registry's, written as
    literals.

    A resource that a search by the parameter may not match (`hidden`: a Patient whose name the
    reader sees masked) sorts as if it had no value, last: its place among the others would tell
    what the mask hides."""
    terms = []
    for key in keys:
        direction = "DESC" if key.descending else "ASC"
        column = _COLUMNS.get(key.param)
        if column is not None:
            terms.append(f"{column} {direction}")
            continue
        kind = _kind(registry, types, key.param)
        value = _KEYS[kind][key.descending]
        aggregate = "max" if key.descending else "min"
        sorted_by = (
            f"(SELECT {aggregate}({value}) FROM {MODULES[kind].TABLE} i "
            f"WHERE i.resource_pk = r.pk AND i.param = {quoted(key.param)})"
        )
        unseen = _unseen(hidden, types, key.param)
        if unseen is not None:
            sorted_by = f"CASE WHEN {unseen} THEN {sorted_by} END"
        terms.append(f"{sorted_by} {direction} NULLS LAST")
    return ", ".join(terms)


def _unseen(hidden: Hidden | None, types: Sequence[str], code: str) -> str | None:
    """SQL over `r`: whether its value of `code` may be sorted by (None: always)."""
    if hidden is None:
        return None
    for resource_type in types:
        condition = hidden(resource_type, code, Literals())
        if condition is not None:
            return condition
    return None
