"""Writes of SubscriptionTopics (Basic resources with the IG's code), on every write path:
flode.events.writes calls `check` before a version is written and `adopt` after it, and
flode.interactions.delete calls `deleting` before a deletion, all in the write's transaction.

- Only an administrator writes or deletes a topic (flode.access.policy.require_admin): a topic
  decides what every subscriber hears of.
- A topic that would be offered (status `active`) and cannot be served is refused with 422
  naming each problem (flode.events.topic_checks), as is a url another active topic has.
- The Subscriptions of a topic that is no longer offered (deleted, no longer active, or its url
  changed) get status `error` saying so; once a topic with that url is offered again, they
  are tried again (a handshake makes them `active`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from flode.access import policy
from flode.context import RequestContext
from flode.events.status import write_status
from flode.events.topic_checks import problems
from flode.events.topic_store import no_longer_offered, topics_where
from flode.events.topics import is_topic, served_url, status_of
from flode.fhir import json
from flode.fhir.errors import Issue, invalid_resource
from flode.interactions.outcome import Outcome
from flode.store.records import Current
from flode.store.repository import Transaction
from flode.store.sql import Args

if TYPE_CHECKING:
    from flode.interactions.services import Services

URL = "Basic.extension('SubscriptionTopic.url')"


@dataclass(frozen=True, slots=True)
class TopicWrite:
    """A write of a Basic that is or was a topic: the url it offered before and will offer
    after (None: none), and the status written."""

    before: str | None
    after: str | None
    status: Any


def check(
    services: Services,
    ctx: RequestContext,
    resource: dict[str, Any],
    stored: dict[str, Any] | None,
) -> TopicWrite | None:
    """Before `resource` is written in place of `stored`: 403 unless an administrator writes,
    422 if it would be offered and cannot be served. None if neither is a topic."""
    if not is_topic(resource) and not is_topic(stored):
        return None
    policy.require_admin(ctx, "Writing a SubscriptionTopic (a Basic with code SubscriptionTopic)")
    after = served_url(resource)
    if is_topic(resource) and status_of(resource) == "active":
        issues = problems(resource, services.search, services.definitions.resource_types)
        if issues:
            raise invalid_resource(issues)
    return TopicWrite(
        served_url(stored), after, status_of(resource) if is_topic(resource) else None
    )


async def adopt(
    tx: Transaction, services: Services, change: TopicWrite, id: str, outcome: Outcome
) -> Outcome:
    """After the version is written, in its transaction: a url is offered by one active topic
    only; Subscriptions follow their topic away and back."""
    issues: list[Issue] = []
    if change.after is not None:
        # Writers of the same url wait for each other: the second sees the first's topic.
        await tx.lock_key(f"SubscriptionTopic {change.after}")
        other = await _offering(tx, services, change.after, id)
        if other is not None:
            raise invalid_resource(
                [
                    Issue(
                        "error",
                        "duplicate",
                        f"SubscriptionTopic: the url {change.after} is already offered by the "
                        f"active topic Basic/{other}; give this topic another url, or retire "
                        "that one first",
                        (URL,),
                    )
                ]
            )
        if change.after != change.before:
            await tx.conn.execute(
                """UPDATE subscription SET next_attempt = now()
                   WHERE topic = $1 AND status = 'error'""",
                change.after,
            )
    if change.before is not None and change.before != change.after:
        issues += await _lost(tx, change.before)
    if change.after is None and change.status is not None:
        issues.append(
            Issue(
                "warning",
                "informational",
                f"This SubscriptionTopic has status '{change.status}': it is stored but not "
                "offered; only a topic with status 'active' is",
                ("Basic.modifierExtension('SubscriptionTopic.status')",),
            )
        )
    return replace(outcome, issues=[*outcome.issues, *issues]) if issues else outcome


async def deleting(tx: Transaction, current: Current) -> list[Issue]:
    """Before `current` is deleted, in the same transaction: only an administrator deletes a
    topic, and its Subscriptions get status `error`."""
    stored = None if current.content is None else json.loads(current.content)
    if current.resource_type != "Basic" or not is_topic(stored):
        return []
    if tx.writer is not None:  # None: Flöde itself
        policy.require_admin(tx.writer, "Deleting a SubscriptionTopic")
    url = served_url(stored)
    return [] if url is None else await _lost(tx, url)


async def _offering(tx: Transaction, services: Services, url: str, id: str) -> str | None:
    """The id of another active topic with the url, if there is one."""
    args = Args()
    where = topics_where(services, args)
    rows = await tx.conn.fetch(
        f"""SELECT r.id, v.content FROM resource r
            JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
            WHERE {where} AND r.id <> {args.add(id)} ORDER BY r.pk""",
        *args.values,
    )
    return next((r["id"] for r in rows if served_url(json.loads(r["content"])) == url), None)


async def _lost(tx: Transaction, url: str) -> list[Issue]:
    """The Subscriptions of a topic no longer offered get status `error`, saying why."""
    rows = await tx.conn.fetch(
        "SELECT id, version FROM subscription WHERE topic = $1 AND status <> 'off' ORDER BY id",
        url,
    )
    changed = []
    for row in rows:
        if await write_status(tx, row["id"], row["version"], "error", no_longer_offered(url)):
            changed.append(row["id"])
    if not changed:
        return []
    return [
        Issue(
            "warning",
            "informational",
            f"The topic {url} is no longer offered: {len(changed)} Subscription(s) of it now "
            f"have status error ({', '.join(f'Subscription/{id}' for id in changed[:20])})",
        )
    ]
