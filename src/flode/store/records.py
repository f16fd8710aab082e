"""What the store hands back: plain records, no database types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of a resource. `content` is None for a deletion (tombstone)."""

    resource_type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    content: str | None

    @property
    def deleted(self) -> bool:
        return self.content is None


@dataclass(frozen=True, slots=True)
class Current:
    """The current version of a resource, locked for writing inside a transaction."""

    pk: int
    resource_type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    content: str | None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which versions a history interaction returns (https://hl7.org/fhir/R4/http.html#history).

    `before` fixes the page set so that writes after the first page do not shift later pages.
    """

    resource_type: str | None
    resource_pk: int | None
    before: datetime
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None
    offset: int = 0
    count: int = 20
