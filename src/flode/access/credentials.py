"""Credentials stored in resources that no reader gets back: the values of a Subscription's
`channel.header` (R4 Subscription; the Backport IG's rest-hook channel), which carry what the
receiving endpoint asks of Flöde — typically `Authorization: Bearer …`. Anyone who may read
the Subscription could otherwise lift the receiver's credentials.

Every exit that masks protected identities (flode.access.protected.Masking) also replaces each
header's value with `HIDDEN`, keeping its name. Deliveries read the stored resource, so they
still send the real value. A client that reads a Subscription, changes something and writes
it back (PUT) sends `HIDDEN` back: the stored value of the header of that name is kept
(`restore`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flode.fhir.errors import FhirError, Issue

HIDDEN = "****"


def mentions(content: str) -> bool:
    """Whether stored JSON may hold a Subscription's headers (cheap; no parsing)."""
    return '"header"' in content and '"Subscription"' in content


def _split(header: Any) -> tuple[str, str] | None:
    name, sep, value = str(header).partition(":")
    return (name.strip(), value.strip()) if sep and name.strip() else None


def redact(resource: Any) -> Any:
    """The resource with its Subscription header values hidden (also of contained
    Subscriptions); the same object when there are none."""
    if not isinstance(resource, dict):
        return resource
    contained = resource.get("contained")
    changed: dict[str, Any] = {}
    if isinstance(contained, list):
        redacted = [redact(c) for c in contained]
        if any(a is not b for a, b in zip(redacted, contained, strict=True)):
            changed["contained"] = redacted
    channel = resource.get("channel")
    if resource.get("resourceType") == "Subscription" and isinstance(channel, dict):
        headers = channel.get("header")
        if isinstance(headers, list) and headers:
            hidden = [
                f"{parts[0]}: {HIDDEN}" if (parts := _split(h)) is not None else h for h in headers
            ]
            changed["channel"] = {**channel, "header": hidden}
    return {**resource, **changed} if changed else resource


def restore(resource: dict[str, Any], stored: Mapping[str, Any] | None) -> None:
    """Put the stored values back into the headers of `resource` (a Subscription written by
    PUT) that were sent as `HIDDEN`; 422 for a hidden header that the stored version does not
    have (there is no value to keep)."""
    channel = resource.get("channel")
    headers = channel.get("header") if isinstance(channel, dict) else None
    if not isinstance(headers, list):
        return
    known: dict[str, str] = {}
    old = stored.get("channel") if stored is not None else None
    for header in old.get("header", []) if isinstance(old, dict) else []:
        parts = _split(header)
        if parts is not None:
            known.setdefault(parts[0].lower(), parts[1])
    for n, header in enumerate(headers):
        parts = _split(header)
        if parts is None or parts[1] != HIDDEN:
            continue
        value = known.get(parts[0].lower())
        if value is None:
            raise FhirError(
                422,
                [
                    Issue(
                        "error",
                        "processing",
                        f"Subscription.channel.header[{n}] keeps a hidden value ('{HIDDEN}'), "
                        f"but the stored Subscription has no header '{parts[0]}': send its value",
                        (f"Subscription.channel.header[{n}]",),
                    )
                ],
            )
        headers[n] = f"{parts[0]}: {value}"
