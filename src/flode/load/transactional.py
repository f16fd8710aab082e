"""The default path of `flode load`: every write through the transaction machinery
(flode.interactions.transaction, batch), exactly as a client's Bundle would be written.

A transaction Bundle is one transaction; a batch Bundle is a batch (each entry on its own); the
resources of a collection Bundle or an NDJSON file are written as `PUT {type}/{id}` entries of
one transaction per chunk. Subscriptions and topics are checked there as in any transaction;
around each, the loader's topics and the dispatchers are kept up to date
(flode.load.subscriptions).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flode.context import RequestContext
from flode.fhir.errors import FhirError, Issue
from flode.interactions.batch import batch
from flode.interactions.entries import label
from flode.interactions.services import Services
from flode.interactions.transaction import transaction
from flode.load import subscriptions
from flode.load.plan import BundleWork, Write, entry_index


class Refused(Exception):
    """Writes the server refused: why, naming where in the file, and the HTTP status."""

    def __init__(
        self,
        message: str,
        status: int,
        written: Sequence[tuple[str, str]] = (),
        *,
        waits_for_topic: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.written = written
        """What was written all the same (the other entries of a batch)."""
        self.waits_for_topic = waits_for_topic
        """A Subscription's topic is not offered (yet): it may be in another file."""


def describe(error: FhirError, names: Sequence[str] | None = None) -> str:
    """The issues of a failure as one line. With `names` (the file positions of a chunk's
    entries), `Bundle.entry[k]` of the chunk is told as the file position it came from."""
    parts = []
    for issue in error.issues:
        parts.append(_issue(issue, names))
    return "; ".join(parts) or f"HTTP {error.status}"


def _issue(issue: Issue, names: Sequence[str] | None) -> str:
    diagnostics = issue.diagnostics
    where = [e for e in issue.expression if not e.startswith("Bundle.entry[")]
    index = entry_index(issue.expression)
    if names is not None and index is not None and index < len(names):
        # The chunk's entry label ("Bundle.entry[3] (PUT Observation/…)") → its file position.
        prefix = diagnostics.split(": ", 1)
        if len(prefix) == 2 and prefix[0].startswith(f"Bundle.entry[{index}]"):
            diagnostics = prefix[1]
        diagnostics = f"{names[index]}: {diagnostics}"
    if where:
        diagnostics += f" (at {', '.join(where)})"
    return diagnostics


class TransactionWriter:
    def __init__(self, services: Services, ctx: RequestContext) -> None:
        self.services = services
        self.ctx = ctx

    async def bundle(self, work: BundleWork) -> list[tuple[str, str]]:
        """Run a transaction or batch Bundle; the (type, id) of every resource written."""
        types = subscriptions.entry_types(work.entries)
        await subscriptions.before(self.services, types)
        if work.kind == "batch":
            try:
                written = await self._batch(work.entries)
            except Refused:  # the other entries were written
                await subscriptions.written(self.services, types)
                raise
            await subscriptions.written(self.services, types)
            return written
        try:
            done = await transaction(self.services, self.ctx, work.entries)
        except FhirError as exc:
            waits = subscriptions.waits_for_topic(exc)
            raise Refused(describe(exc), exc.status, waits_for_topic=waits) from None
        await subscriptions.written(self.services, types)
        return [
            (outcome.version.resource_type, outcome.version.id)
            for entry, outcome in done
            if entry.method not in ("GET", "HEAD")
            and outcome.version is not None
            # A conditional create that found its resource wrote nothing.
            and not (entry.method == "POST" and outcome.status == 200)
        ]

    async def _batch(self, entries: list[Any]) -> list[tuple[str, str]]:
        outcome = await batch(self.services, self.ctx, entries, "minimal")
        assert outcome.body is not None
        written, failed = [], []
        for index, entry in enumerate(outcome.body.get("entry", [])):
            response = entry["response"]
            if not response["status"].startswith("2"):
                issues = response.get("outcome", {}).get("issue", [])
                reason = "; ".join(i.get("diagnostics", "") for i in issues) or response["status"]
                failed.append(f"{label(index, entries[index])}: {reason}")
            elif "location" in response:
                kind, id, *_ = response["location"].split("/")
                written.append((kind, id))
        if failed:
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            raise Refused(
                f"{len(failed)} of {len(entries)} batch entries failed, the others were "
                f"written: {failed[0]}{more}",
                400,
                written,
            )
        return written

    async def resources(self, writes: Sequence[Write]) -> None:
        """Write resources as the PUT entries of one transaction (each resource at most once)."""
        entries = [
            {"resource": w.resource, "request": {"method": "PUT", "url": "/".join(w.key)}}
            for w in writes
        ]
        types = {w.resource_type for w in writes}
        await subscriptions.before(self.services, types)
        try:
            await transaction(self.services, self.ctx, entries)
        except FhirError as exc:
            names = [f"{w.where} ({w.resource_type}/{w.id})" for w in writes]
            waits = subscriptions.waits_for_topic(exc)
            raise Refused(describe(exc, names), exc.status, waits_for_topic=waits) from None
        await subscriptions.written(self.services, types)
