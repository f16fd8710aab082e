"""Token search parameters (https://hl7.org/fhir/R4/search.html#token).

Index rows live in `search_token` (system, code). For now only the `identifier` parameter is
indexed, which conditional create/update/delete need.
"""

from __future__ import annotations

from typing import Any

from flode.fhir.errors import bad_request
from flode.store.sql import Args

IDENTIFIER = "identifier"


def identifier_rows(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(system, value) of every top-level Identifier the resource carries."""
    found = resource.get("identifier")
    if found is None:
        return []
    items = found if isinstance(found, list) else [found]
    rows = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            system = item.get("system")
            rows.append((system if isinstance(system, str) else None, item["value"]))
    return rows


def predicate(param: str, raw: str, args: Args) -> str:
    """SQL over `resource r` matching any of the comma-separated token values in `raw`:
    `code`, `system|code`, `|code` (no system) and `system|` (any code in the system)."""
    ors: list[str] = []
    for value in raw.split(","):
        system, sep, code = value.partition("|") if "|" in value else ("", "", value)
        if not system and not code:
            raise bad_request(f"Empty value in search parameter '{param}'", param)
        if not sep:
            ors.append(f"t.code = {args.add(code)}")
        elif not system:
            ors.append(f"(t.system IS NULL AND t.code = {args.add(code)})")
        elif not code:
            ors.append(f"t.system = {args.add(system)}")
        else:
            ors.append(f"(t.system = {args.add(system)} AND t.code = {args.add(code)})")
    return (
        "EXISTS (SELECT 1 FROM search_token t WHERE t.resource_pk = r.pk "
        f"AND t.param = {args.add(param)} AND ({' OR '.join(ors)}))"
    )
