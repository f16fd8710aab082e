"""What an interaction hands back to the HTTP adapter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flode.fhir.errors import Issue
from flode.store.records import Version


@dataclass(frozen=True, slots=True)
class Outcome:
    """`version` is the stored resource the response is about (its content is the body unless
    `body` is given); `issues` explain a success for `Prefer: return=OperationOutcome`; `headers`
    are added to the response."""

    status: int
    version: Version | None = None
    body: dict[str, Any] | None = None
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
