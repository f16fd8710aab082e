"""What every search-parameter type shares: the shape of evaluated nodes, comma-separated
values, `:missing`, and the prefixes of ordered types
(https://hl7.org/fhir/R4/search.html#ptypes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.sql import Args
from flode.text import split_escaped

Node = tuple[str, Any]
"""(FHIR type name of an element, its JSON value) as the FHIRPath evaluator yields it."""

Condition = Callable[[str, str | None, str, Args], str]
"""condition(param, modifier, one value, args) -> SQL over the index row `i`."""

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
# The end of what a prefix search can reach: one character above every other one, so that
# `value ~<~ prefix + TOP` bounds all strings that start with `prefix`.
TOP = "\U0010ffff"


def nodes_of(nodes: Iterable[Node], *types: str) -> Iterable[tuple[str, Any]]:
    return ((kind, value) for kind, value in nodes if kind in types)


def exists(table: str, param: str, condition: str, args: Args) -> str:
    """Some index row of `table` for `param` on resource `r` satisfies `condition` (over `i`)."""
    return (
        f"EXISTS (SELECT 1 FROM {table} i WHERE i.resource_pk = r.pk "
        f"AND i.resource_type = r.resource_type AND i.param = {args.add(param)} "
        f"AND ({condition}))"
    )


def missing(table: str, param: str, value: str, args: Args) -> str:
    """`param:missing=true` (no index row at all) or `=false` (at least one)."""
    if value not in ("true", "false"):
        raise bad_request(f"'{param}:missing' takes true or false, not '{value}'", param)
    found = exists(table, param, "true", args)
    return f"NOT {found}" if value == "true" else found


def split_prefix(param: str, value: str) -> tuple[str, str]:
    """The prefix of an ordered value (`eq` when none) and the rest."""
    if value[:2] in PREFIXES and len(value) > 2:
        return value[:2], value[2:]
    if value[:2].isalpha():
        raise bad_request(f"Unknown prefix '{value[:2]}' in search parameter '{param}'", param)
    return "eq", value


def search(
    table: str, condition: Condition, param: str, modifier: str | None, raw: str, args: Args
) -> str:
    """SQL over `resource r` for a whole parameter value: `:missing`, or one index row matching
    any of its comma-separated values."""
    if modifier == "missing":
        return missing(table, param, raw, args)
    ors = [condition(param, modifier, value, args) for value in split_escaped(raw, ",")]
    return exists(table, param, " OR ".join(f"({c})" for c in ors), args)


def like_escape(text: str) -> str:
    """`text` as a literal inside a LIKE pattern (PostgreSQL's default escape is `\\`)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
