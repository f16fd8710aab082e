"""What the store hands back: plain records, no database types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from flode.store.sql import Args


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
    owner_unit: str | None = None
    """The care unit and care provider (HSA-ids) the resource was first written under."""
    owner_provider: str | None = None

    def as_version(self) -> Version:
        """The current version as a record (a deletion's method is DELETE; the method of any
        other version does not matter to its readers)."""
        method = "DELETE" if self.deleted else "PUT"
        return Version(
            self.resource_type, self.id, self.version, self.last_updated, method, self.content
        )


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


@dataclass(frozen=True, slots=True)
class Scope:
    """What a search matches: resources of `types` (None: every type) satisfying `where`, a
    compiled predicate over `resource r` whose values are in `args`, ordered by `order`
    (SQL over `r`; newest first when empty)."""

    types: Sequence[str] | None
    where: str
    args: Args
    order: str = ""


@dataclass(frozen=True, slots=True)
class LinkQuery:
    """One `_include` (`reverse` False) or `_revinclude` step: references from resources of
    `source_type` through `param` to `target_type` (None: any of them), at most `limit`
    resources."""

    source_type: str | None
    param: str | None
    target_type: str | None
    reverse: bool
    limit: int
