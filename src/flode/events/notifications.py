"""Notification Bundles of the R4 Subscriptions Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/notifications.html): a `history` Bundle whose
first entry is the SubscriptionStatus — for R4 a `Parameters` resource in the
backport-subscription-status-r4 profile — followed by the events' resources as the payload
content asks (`empty`: none; `id-only`: their URLs; `full-resource`: the resources, patients
with protected identity masked as the reader may see them, flode.access.protected).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from flode.access.protected import MASK_ALL, Masking
from flode.fhir import json
from flode.fhir.dates import format_instant

STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-status-r4"
)
NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "backport-subscription-notification-r4"
)
_METHOD = {"create": ("POST", "201"), "update": ("PUT", "200"), "delete": ("DELETE", "204")}


@dataclass(frozen=True, slots=True)
class Notified:
    """One event of a subscription, with the content of its version when it is sent in full."""

    number: int
    resource_type: str
    resource_id: str
    version: int
    action: str
    occurred: datetime
    content: str | None = None
    method: str | None = None
    """How the version was written (POST, PUT, PATCH, DELETE), when known."""

    @classmethod
    def of(cls, row: asyncpg.Record) -> Notified:
        """From a row with these columns."""
        return cls(
            row["number"],
            row["resource_type"],
            row["resource_id"],
            row["version"],
            row["action"],
            row["occurred"],
            row["content"],
            row["method"],
        )


def status_parameters(
    base_url: str,
    subscription_id: str,
    topic: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: Sequence[Notified] = (),
    content: str = "id-only",
    errors: Sequence[str] = (),
) -> dict[str, Any]:
    """The SubscriptionStatus of a notification, `$status` or `$events`."""
    id = str(uuid.uuid4())
    parameters: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base_url}/Subscription/{subscription_id}"},
        },
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": format_instant(event.occurred)},
        ]
        if content != "empty":
            reference = f"{base_url}/{event.resource_type}/{event.resource_id}"
            parts.append({"name": "focus", "valueReference": {"reference": reference}})
        parameters.append({"name": "notification-event", "part": parts})
    for text in errors:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": text}})
    return {
        "resourceType": "Parameters",
        "id": id,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameters,
    }


def notification_bundle(
    base_url: str,
    subscription_id: str,
    topic: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: Sequence[Notified] = (),
    content: str = "id-only",
    masking: Masking = MASK_ALL,
) -> dict[str, Any]:
    """A handshake, heartbeat, event-notification or query-event Bundle; `masking` is what its
    reader (the subscriber, or who asks for `$events`) sees of patients with protected
    identity."""
    parameters = status_parameters(
        base_url, subscription_id, topic, status, kind, events_since_start, events, content
    )
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{parameters['id']}",
            "resource": parameters,
            "request": {
                "method": "GET",
                "url": f"{base_url}/Subscription/{subscription_id}/$status",
            },
            "response": {"status": "200"},
        }
    ]
    if content != "empty":
        for event in events:
            method, status_code = _METHOD[event.action]
            method = event.method or method
            url = f"{event.resource_type}/{event.resource_id}"
            entry: dict[str, Any] = {"fullUrl": f"{base_url}/{url}"}
            if content == "full-resource" and event.content is not None:
                entry["resource"] = json.loads(masking.text(event.content))
            entry["request"] = {
                "method": method,
                "url": event.resource_type if method == "POST" else url,
            }
            entry["response"] = {
                "status": status_code,
                "etag": f'W/"{event.version}"',
                "lastModified": format_instant(event.occurred),
            }
            entries.append(entry)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(datetime.now(UTC)),
        "entry": entries,
    }
