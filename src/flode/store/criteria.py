"""Search criteria compiled to SQL over `resource r`, limited to `_id`, `identifier` and
`_lastUpdated`: what conditional create, update and delete need before the full search engine
(https://hl7.org/fhir/R4/search.html) takes over."""

from __future__ import annotations

from collections.abc import Sequence

from flode.fhir.dates import parse_range
from flode.fhir.errors import bad_request
from flode.store.params import token
from flode.store.sql import Args

SUPPORTED = ("_id", "identifier", "_lastUpdated")
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def last_updated_predicate(raw: str, args: Args) -> str:
    """`_lastUpdated` with any prefix, over `resource r`."""
    ors = []
    col = "r.last_updated"
    for value in raw.split(","):
        prefix = value[:2] if value[:2] in _PREFIXES else "eq"
        text = value[2:] if value[:2] in _PREFIXES else value
        low, high = parse_range(text, "_lastUpdated")
        # Only the bounds a prefix uses become arguments: PostgreSQL cannot type an unused one.
        if prefix in ("gt", "sa"):
            ors.append(f"{col} >= {args.add(high)}")
        elif prefix in ("lt", "eb"):
            ors.append(f"{col} < {args.add(low)}")
        elif prefix == "ge":
            ors.append(f"{col} >= {args.add(low)}")
        elif prefix == "le":
            ors.append(f"{col} < {args.add(high)}")
        elif prefix == "ne":
            ors.append(f"({col} < {args.add(low)} OR {col} >= {args.add(high)})")
        else:  # eq, ap
            ors.append(f"({col} >= {args.add(low)} AND {col} < {args.add(high)})")
    return "(" + " OR ".join(ors) + ")"


def compile_criteria(params: Sequence[tuple[str, str]]) -> tuple[str, Args]:
    """AND of the given parameters (each may OR values with commas). Unsupported parameters are
    refused rather than ignored: a conditional write that ignored one would match too much."""
    args = Args()
    ands: list[str] = []
    for name, raw in params:
        if name == "_id":
            ands.append(f"r.id = ANY({args.add(raw.split(','))}::text[])")
        elif name == "identifier":
            ands.append(token.predicate(token.IDENTIFIER, raw, args))
        elif name == "_lastUpdated":
            ands.append(last_updated_predicate(raw, args))
        else:
            raise bad_request(
                f"Search parameter '{name}' is not supported here; "
                f"supported: {', '.join(SUPPORTED)}",
                name,
            )
    if not ands:
        raise bad_request("Search criteria are required")
    return " AND ".join(ands), args


def criteria_keys(resource_type: str, params: Sequence[tuple[str, str]]) -> list[str]:
    """Lock keys that serialise conditional writes which could match the same resource.

    Criteria naming identifiers lock each identifier value, so `identifier=123` and
    `identifier=sys|123` wait for each other; other criteria lock their canonical form.
    """
    values = [v for name, raw in params if name == "identifier" for v in raw.split(",")]
    if values:
        return sorted({f"{resource_type}|identifier|{v.rpartition('|')[2] or v}" for v in values})
    return [resource_type + "?" + "&".join(f"{n}={v}" for n, v in sorted(params))]
