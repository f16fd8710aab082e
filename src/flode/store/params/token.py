"""Token search parameters (https://hl7.org/fhir/R4/search.html#token).

Index rows live in `search_token` (system, code). For now only the `identifier` parameter is
indexed, which conditional create/update/delete need.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flode.fhir.errors import bad_request
from flode.store.sql import Args

IDENTIFIER = "identifier"
# A btree index row holds at most about 2.7 kB. A longer system or code is indexed, and searched
# for, by its digest instead, so matching stays exact.
MAX_INDEXED_BYTES = 512


def indexed(text: str) -> str:
    """The form of a system or code in `search_token`."""
    raw = text.encode()
    return text if len(raw) <= MAX_INDEXED_BYTES else f"sha256:{hashlib.sha256(raw).hexdigest()}"


def identifier_rows(resource: dict[str, Any]) -> list[tuple[str | None, str]]:
    """(system, value) of every top-level Identifier the resource carries, as indexed."""
    found = resource.get("identifier")
    if found is None:
        return []
    items = found if isinstance(found, list) else [found]
    rows = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("value"), str):
            system = item.get("system")
            rows.append(
                (indexed(system) if isinstance(system, str) else None, indexed(item["value"]))
            )
    return rows


def predicate(param: str, raw: str, args: Args) -> str:
    """SQL over `resource r` matching any of the comma-separated token values in `raw`:
    `code`, `system|code`, `|code` (no system) and `system|` (any code in the system)."""
    ors: list[str] = []
    for value in raw.split(","):
        system, sep, code = value.partition("|") if "|" in value else ("", "", value)
        if not system and not code:
            raise bad_request(f"Empty value in search parameter '{param}'", param)
        system, code = indexed(system), indexed(code)
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
