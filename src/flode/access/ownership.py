"""Who owns what (L7–L9, L11): every resource records the care unit and care provider it was
written under, in `meta.tag` and in the `resource` row's owner columns.

The owner is decided when a resource is first written and never changes: a clinician's or a
module's own unit and provider (whatever the body says); for a writer without them (the platform
itself, an operator), the owner tags the body carries, if any, so data moved from another
system keeps its owner. Every later version keeps the first one's owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flode.context import RequestContext

UNIT_SYSTEM = "http://flode.example.org/CodeSystem/care-unit"
PROVIDER_SYSTEM = "http://flode.example.org/CodeSystem/care-provider"
HSA_SYSTEM = "urn:oid:1.2.752.29.4.19"


@dataclass(frozen=True, slots=True)
class Owner:
    unit: str | None
    provider: str | None


NOBODY = Owner(None, None)


def of_writer(ctx: RequestContext | None) -> Owner | None:
    """The writer's own unit and provider; None when it has none (its body's tags count)."""
    if ctx is None or ctx.trusted or not (ctx.care_unit_hsa_id or ctx.care_provider_hsa_id):
        return None
    return Owner(ctx.care_unit_hsa_id, ctx.care_provider_hsa_id)


def in_tags(resource: Mapping[str, Any]) -> Owner:
    """The owner the resource's meta.tag names."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    unit = provider = None
    for tag in tags if isinstance(tags, list) else []:
        if not isinstance(tag, dict) or not isinstance(code := tag.get("code"), str):
            continue
        if tag.get("system") == UNIT_SYSTEM:
            unit = code
        elif tag.get("system") == PROVIDER_SYSTEM:
            provider = code
    return Owner(unit, provider)


def apply(resource: dict[str, Any], owner: Owner) -> None:
    """Make the resource's owner tags say `owner` (and nothing else about ownership)."""
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    tags = meta.get("tag")
    kept = [
        t
        for t in (tags if isinstance(tags, list) else [])
        if not (isinstance(t, dict) and t.get("system") in (UNIT_SYSTEM, PROVIDER_SYSTEM))
    ]
    if owner.unit:
        kept.append({"system": UNIT_SYSTEM, "code": owner.unit})
    if owner.provider:
        kept.append({"system": PROVIDER_SYSTEM, "code": owner.provider})
    if kept:
        meta["tag"] = kept
    else:
        meta.pop("tag", None)
    resource["meta"] = meta


def decide(resource: dict[str, Any], writer: RequestContext | None, current: Owner | None) -> Owner:
    """Set the owner tags of a version about to be written and return its owner: the current
    version's (`current`, None for a new resource), else the writer's, else the body's."""
    owner = current if current is not None else (of_writer(writer) or in_tags(resource))
    apply(resource, owner)
    return owner
