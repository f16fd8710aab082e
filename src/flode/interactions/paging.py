"""Parameters shared by history and search: `_count` and the page links' own parameters.

Pages are addressed by an offset into a result set frozen at a snapshot time (`_snapshot`),
so writes made while a client pages do not shift the pages it has not read yet. A search with
more than one page also stores its matches (`_results`): its later pages are read from there.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from flode.fhir.bundle import link
from flode.fhir.dates import format_instant, parse_instant
from flode.fhir.errors import bad_request

PAGING = ("_count", "_offset", "_snapshot", "_results")


def _non_negative(name: str, raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9:
        raise bad_request(f"'{name}' must be a non-negative integer, not '{raw}'", name)
    return int(raw)


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise bad_request(f"'_results' must be the id of a result set, not '{raw}'") from None


@dataclass(frozen=True, slots=True)
class Page:
    count: int
    offset: int
    snapshot: datetime
    results: uuid.UUID | None = None

    @classmethod
    def parse(cls, params: Sequence[tuple[str, str]], default: int, maximum: int) -> Page:
        values = dict(params)
        count = _non_negative("_count", values["_count"]) if "_count" in values else default
        offset = _non_negative("_offset", values["_offset"]) if "_offset" in values else 0
        snapshot = (
            parse_instant(values["_snapshot"], "_snapshot")
            if "_snapshot" in values
            else datetime.now(UTC)
        )
        results = _uuid(values["_results"]) if "_results" in values else None
        return cls(min(count, maximum), offset, snapshot, results)

    def links(
        self,
        url: str,
        params: Sequence[tuple[str, str]],
        has_next: bool,
        results: uuid.UUID | None = None,
    ) -> list[dict[str, str]]:
        """self, first, previous and next links, each carrying the snapshot and the stored
        result set, if any."""
        kept = [(k, v) for k, v in params if k not in PAGING]
        fixed = [*kept, ("_count", str(self.count)), ("_snapshot", format_instant(self.snapshot))]
        if results is not None:
            fixed.append(("_results", str(results)))
        out = [link("self", url, [*fixed, ("_offset", str(self.offset))])]
        out.append(link("first", url, [*fixed, ("_offset", "0")]))
        if self.count == 0:  # `_count=0` asks only for the total: there are no pages to page
            return out
        if self.offset > 0:
            previous = max(0, self.offset - self.count)
            out.append(link("previous", url, [*fixed, ("_offset", str(previous))]))
        if has_next:
            out.append(link("next", url, [*fixed, ("_offset", str(self.offset + self.count))]))
        return out
