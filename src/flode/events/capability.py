"""What the CapabilityStatement says about subscriptions (R4 Subscriptions Backport IG,
CapabilityStatement "backport-subscription-server-r4"): the topics offered, the Subscription
profile and the operations."""

from __future__ import annotations

from typing import Any

from flode.events.subscription import PROFILE
from flode.events.topics import Topics

TOPIC_CANONICAL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)
_OPERATIONS = "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"


def subscription_capability(topics: Topics) -> dict[str, Any]:
    """The fields the CapabilityStatement's Subscription entry adds."""
    return {
        "extension": [{"url": TOPIC_CANONICAL, "valueCanonical": url} for url in topics.urls],
        "supportedProfile": [PROFILE],
        "operation": [
            {"name": "status", "definition": f"{_OPERATIONS}backport-subscription-status"},
            {"name": "events", "definition": f"{_OPERATIONS}backport-subscription-events"},
            {
                "name": "get-ws-binding-token",
                "definition": f"{_OPERATIONS}backport-subscription-get-ws-binding-token",
            },
        ],
    }
