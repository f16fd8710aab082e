"""The access log entries of interactions (DOMAIN.md L4; docs/audit.md): one per patient whose
data a response touched, written before the response is sent — a write's in its own
transaction (flode.store.repository), a read's or a search's right after it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from flode.access.explain import Denied
from flode.access.touched import accesses, patients_of
from flode.audit import Access, append
from flode.context import RequestContext
from flode.fhir import json
from flode.interactions.services import Services
from flode.store.records import Version


async def touched(
    services: Services, ctx: RequestContext, found: Iterable[Version]
) -> dict[str, list[str]]:
    """Whose data `found` is, for a request that is logged (none for Flöde itself)."""
    return {} if ctx.trusted else await patients_of(services.store.pool, found)


async def record(services: Services, ctx: RequestContext, entries: Sequence[Access]) -> None:
    if entries and not ctx.trusted:
        await append(services.store.pool, ctx, entries)


async def read(services: Services, ctx: RequestContext, version: Version, kind: str) -> None:
    """A read, vread or history entry of one resource: its patients from its content."""
    if ctx.trusted or version.content is None:
        return
    resource: Any = json.loads(version.content)
    patients = services.store.indexer.patients(resource)
    ref = f"{version.resource_type}/{version.id}"
    await record(services, ctx, accesses({p: [ref] for p in patients}, kind))


async def denied(
    services: Services, ctx: RequestContext, denial: Denied, resource_type: str, id: str
) -> None:
    """A read the rules refused: logged for each patient it asked about (L4)."""
    flags = frozenset({"no-care-relationship"}) if denial.missing_relationship else frozenset()
    await record(
        services,
        ctx,
        [
            Access(
                "read",
                "R",
                patient,
                (f"{resource_type}/{id}",),
                outcome="4",
                flags=flags,
                detail=str(denial),
            )
            for patient in denial.patients
        ],
    )


__all__ = ["accesses", "denied", "read", "record", "touched"]
