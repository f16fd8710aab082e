"""Writes of Subscription resources (R4 Subscriptions Backport IG): every one — `POST`, `PUT`,
`PATCH` and conditional `PUT` on Subscription, and each of them as an entry of a transaction or
batch Bundle — is checked for what this server can serve and adopted here, inside the write's
own transaction (the create, update and patch interactions call `check` before they write a
version and `adopt` after it).

`check` puts back the header values a reader was shown as `****` (flode.access.credentials),
refuses what cannot be served (422, or 403 for a writer who would never be notified) and makes
the status a request. `adopt` keeps who wrote it (the access its notifications are held to)
beside the resource; the handshake follows once the write has committed.

Writes of SubscriptionTopics (Basic resources) pass through the same two steps, and deletions
of them through `deleting` (flode.events.topic_writes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flode.access import credentials, policy
from flode.context import RequestContext
from flode.events import topic_writes
from flode.events.subscription import Spec
from flode.events.topic_writes import TopicWrite
from flode.fhir import json
from flode.fhir.errors import Issue
from flode.interactions.outcome import Outcome
from flode.store.records import Current
from flode.store.repository import Transaction

if TYPE_CHECKING:
    from flode.interactions.services import Services

SUBSCRIPTION = "Subscription"

CLASSIC = Issue(
    "warning",
    "not-supported",
    "This Subscription's criteria is an R4 search, not the canonical URL of a SubscriptionTopic: "
    "it is stored as written, but Flöde notifies only topic-based Subscriptions (the R4 "
    "Subscriptions Backport IG; the topics are listed in the CapabilityStatement)",
    ("Subscription.criteria",),
)


@dataclass(frozen=True, slots=True)
class Checked:
    """A Subscription about to be written, as this server will serve it; `spec` is None for
    a core R4 Subscription, which is stored as written and never served."""

    spec: Spec | None


def classic(resource: dict[str, Any]) -> bool:
    """A Subscription of the core R4 kind: its criteria a search (`Observation?code=…`), not
    a topic's canonical URL."""
    criteria = resource.get("criteria")
    return isinstance(criteria, str) and not criteria.startswith(("http://", "https://", "urn:"))


def served(services: Services, ctx: RequestContext, resource: dict[str, Any]) -> Spec | None:
    """The Subscription as this server will serve it: 422 if it cannot be, 403 if the writer
    may read none of the topic's resources (every event would be withheld from them). The
    status a client writes is a request: anything but `off` becomes `requested`, and the
    server moves it on (handshake → `active`, or `error`). None for a core R4 Subscription."""
    if classic(resource):
        return None
    spec = services.events.check(resource, services.search)
    if not any(policy.allows(ctx, kind, "r") for kind in spec.topic.resource_types):
        raise policy.forbidden(
            f"The access token may read none of the resources of topic {spec.topic.url} "
            f"({', '.join(sorted(spec.topic.resource_types))}): it would never be notified"
        )
    if resource.get("status") != "off":
        resource["status"] = "requested"
    resource.pop("error", None)
    return spec


def check(
    services: Services,
    ctx: RequestContext,
    resource_type: str,
    resource: dict[str, Any],
    current: Current | None,
) -> Checked | TopicWrite | None:
    """Before `resource` is written in place of `current` (None: it is new): a Subscription's
    headers sent as `****` get the stored values back, then it is checked (`served`); a
    SubscriptionTopic is checked by flode.events.topic_writes. None for anything else, which is
    written as it is."""
    if resource_type not in (SUBSCRIPTION, "Basic"):
        return None
    stored = None if current is None or current.content is None else json.loads(current.content)
    if resource_type == "Basic":
        return topic_writes.check(services, ctx, resource, stored)
    credentials.restore(resource, stored)
    return Checked(served(services, ctx, resource))


async def adopt(
    tx: Transaction,
    services: Services,
    ctx: RequestContext,
    checked: Checked | TopicWrite | None,
    outcome: Outcome,
) -> Outcome:
    """After the version is written, in the same transaction: the subscription is served as
    `ctx`'s. A Subscription that became a core R4 one is no longer served (its row is `off`)."""
    version = outcome.version
    if checked is None or version is None:
        return outcome
    if isinstance(checked, TopicWrite):
        return await topic_writes.adopt(tx, services, checked, version.id, outcome)
    if checked.spec is None:
        await tx.conn.execute(
            "UPDATE subscription SET status = 'off', version = $2 WHERE id = $1",
            version.id,
            version.version,
        )
        return replace(outcome, issues=[*outcome.issues, CLASSIC])
    await services.events.adopt(tx.conn, ctx, version.id, version.version, checked.spec)
    return outcome


async def deleting(tx: Transaction, current: Current) -> list[Issue]:
    """Before `current` is deleted, in the deletion's transaction (a SubscriptionTopic's are
    an administrator's, and its Subscriptions get status `error`); what the outcome adds."""
    return await topic_writes.deleting(tx, current)
