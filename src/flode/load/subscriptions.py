"""Subscriptions and SubscriptionTopics in a load (`flode load` by either path, and `$import`):
checked and served exactly as an API write of them is (flode.events.writes), never stored
unchecked.

- The load process reads the stored topics before it writes (`read_topics`, from
  flode.load.worker.open_loader), again before each chunk that holds a Subscription and after
  each that wrote a Basic (`before`, `written`): a Subscription to a topic an administrator
  stored, through the API or earlier in the same load, is accepted.
- A Subscription that follows a topic in the same chunk begins a chunk of its own (`runs`), so
  that the topic is committed, and offered, when the Subscription is checked.
- Once a chunk that wrote Subscriptions is committed, the dispatchers are told, as after an API
  write (flode.api.routes.after_write): they handshake them at once.
- A Subscription refused because its topic is not offered (`waits_for_topic`) waits as a
  conditional reference to nothing yet does: its file is loaded again once the others are
  (flode.load.runner), its `$import` input goes on in the next round (flode.load.lenient).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from flode.events import writes
from flode.events.topics import is_topic
from flode.fhir.errors import FhirError
from flode.interactions.services import Services
from flode.load.plan import Write

SUBSCRIPTION = writes.SUBSCRIPTION
TOPIC = "Basic"
"""The resource type of SubscriptionTopics (the IG's R4 form)."""
CRITERIA = "Subscription.criteria"
"""Where the issue of a Subscription whose topic is not offered points (flode.events.subscription);
no other issue points there exactly."""


def checked(resource_type: str, resource: Mapping[str, Any]) -> bool:
    """Whether a write takes the checks of an API write (flode.events.writes): a Subscription,
    or a Basic that is a SubscriptionTopic."""
    return resource_type == SUBSCRIPTION or (resource_type == TOPIC and is_topic(resource))


def runs(writes: Sequence[Write]) -> Iterator[list[Write]]:
    """The writes in order, in runs where no Subscription follows a topic."""
    run: list[Write] = []
    topic = False
    for write in writes:
        if topic and write.resource_type == SUBSCRIPTION:
            yield run
            run, topic = [], False
        run.append(write)
        topic = topic or (write.resource_type == TOPIC and is_topic(write.resource))
    if run:
        yield run


def waits_for_topic(error: FhirError) -> bool:
    """Whether a write was refused (also) because a Subscription's topic is not offered: once
    the topic is loaded, it may be accepted."""
    return error.status == 422 and any(CRITERIA in issue.expression for issue in error.issues)


async def read_topics(services: Services) -> None:
    """Offer the topics stored now to the Subscriptions this process checks."""
    await services.events.read_topics(services)


async def before(services: Services, types: Collection[str]) -> None:
    """Before a chunk of resources of these types is written: the topics its Subscriptions
    name may have been stored since they were read (by another worker, file or server)."""
    if SUBSCRIPTION in types:
        await read_topics(services)


async def written(services: Services, types: Collection[str]) -> None:
    """After a chunk of resources of these types is committed: what a Basic written changed in
    the topics is offered from now on; the dispatchers look at the Subscriptions written."""
    if TOPIC in types:
        await read_topics(services)
    if SUBSCRIPTION in types:
        await services.events.refresh(services.store.pool)


def entry_types(entries: Sequence[Any]) -> set[str]:
    """The resource types a transaction or batch Bundle's entries write or delete."""
    found = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        resource, request = entry.get("resource"), entry.get("request")
        if isinstance(resource, Mapping) and isinstance(resource.get("resourceType"), str):
            found.add(resource["resourceType"])
        if isinstance(request, Mapping) and isinstance(request.get("url"), str):
            found.add(request["url"].split("?", 1)[0].split("/", 1)[0])
    return found
