"""What conditional writes and the search compiler share: `_lastUpdated` (a column of
`resource`, not an index row) and the lock keys that serialise conditional writes."""

from __future__ import annotations

from collections.abc import Sequence

from flode.fhir.dates import parse_range
from flode.store.sql import Args

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


def criteria_keys(resource_type: str, params: Sequence[tuple[str, str]]) -> list[str]:
    """Lock keys that serialise conditional writes which could match the same resource.

    Criteria naming identifiers lock each identifier value, so `identifier=123` and
    `identifier=sys|123` wait for each other; other criteria lock their canonical form.
    """
    values = [v for name, raw in params if name == "identifier" for v in raw.split(",")]
    if values:
        return sorted({f"{resource_type}|identifier|{v.rpartition('|')[2] or v}" for v in values})
    return [resource_type + "?" + "&".join(f"{n}={v}" for n, v in sorted(params))]
