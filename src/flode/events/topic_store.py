"""The topics in the database. Every current Basic that is an active SubscriptionTopic — found
by the search any module can run, `Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic`
— and can be served (flode.events.topic_checks) is a topic; the shipped ones are stored at
start-up (`publish_shipped`) and are topics like any other.

`TopicStore.refresh` reads them into the shared `Topics` when they changed (when they did not,
it costs one indexed look-up): on this server right after a write of a Basic
(flode.api.routes.after_write), on every server every `topics_seconds` (flode.events.service),
in the dispatcher whenever it reads the Subscriptions again (flode.events.matching), and in
`flode load` and `$import` around the chunks that write Subscriptions or Basics
(flode.load.subscriptions).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from flode.context import RequestContext
from flode.events.topic_checks import problems
from flode.events.topics import TOPIC_SEARCH, Topics, is_topic, served_url, shipped, status_of
from flode.events.versions import Conn
from flode.fhir import json
from flode.fhir.search_query import parse
from flode.store.records import Version
from flode.store.sql import Args

if TYPE_CHECKING:
    from flode.interactions.services import Services

log = structlog.get_logger(__name__)

PUBLISH_LOCK = 0x464C4F4445545450  # "FLODETTP": one server at a time stores the shipped topics


def topics_where(services: Services, args: Args) -> str:
    """SQL over `resource r`: the current, non-deleted Basic resources coded as topics."""
    compiled = services.search.compile("Basic", parse([TOPIC_SEARCH]), args)
    return f"r.resource_type = 'Basic' AND NOT r.deleted AND ({compiled.where})"


def no_longer_offered(url: str) -> str:
    """Why a Subscription whose topic went away has status `error` (and `$status` says so)."""
    return (
        f"The SubscriptionTopic {url} is no longer offered (its Basic resource was deleted or "
        "is no longer active): no events are sent until an administrator offers it again"
    )


class TopicStore:
    """Keeps `topics` equal to the topics stored, updating it in place."""

    def __init__(self, services: Services, topics: Topics, *, unpublished: bool = False) -> None:
        self.services = services
        self.topics = topics
        self.unpublished = unpublished
        """Offer too the shipped topics whose Basic was never stored, as the first server to
        start will store them (`publish_shipped`): for `flode load`, which may write before
        any server ran on the database."""
        self._seen: list[tuple[int, int]] | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, conn: Conn | asyncpg.Pool | None = None) -> bool:
        """Read the stored topics into `topics` if any was written since the last look;
        whether any was."""
        db = conn if conn is not None else self.services.store.pool
        async with self._lock:
            args = Args()
            rows = await db.fetch(
                f"""SELECT r.pk, r.version FROM resource r WHERE {topics_where(self.services, args)}
                    ORDER BY r.pk""",
                *args.values,
            )
            seen = [(r["pk"], r["version"]) for r in rows]
            if seen == self._seen:
                return False
            contents = await db.fetch(
                """SELECT v.content FROM resource_version v
                   JOIN unnest($1::bigint[], $2::integer[]) WITH ORDINALITY AS w (pk, version, n)
                   ON v.resource_pk = w.pk AND v.version = w.version ORDER BY w.n""",
                [pk for pk, _ in seen],
                [version for _, version in seen],
            )
            resources = [json.loads(r["content"]) for r in contents]
            if self.unpublished:
                resources += await _never_stored(db)
            self.topics.replace(self._servable(resources))
            self._seen = seen
        log.info("subscription topics loaded", topics=len(self.topics.urls))
        return True

    def _servable(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The active topics that can be served, the first written of each url."""
        found: dict[str, dict[str, Any]] = {}
        types = self.services.definitions.resource_types
        for resource in resources:
            url = served_url(resource)
            if url is None:
                continue
            issues = problems(resource, self.services.search, types)
            if issues or url in found:
                reasons = [i.diagnostics for i in issues] or [f"another topic has the url {url}"]
                log.warning("subscription topic not served", id=resource.get("id"), why=reasons)
                continue
            found[url] = resource
        return list(found.values())


async def _never_stored(db: Conn | asyncpg.Pool) -> list[dict[str, Any]]:
    """The shipped topics whose Basic id was never written."""
    resources = shipped()
    rows = await db.fetch(
        "SELECT id FROM resource WHERE resource_type = 'Basic' AND id = ANY($1::text[])",
        [resource["id"] for resource in resources],
    )
    stored = {row["id"] for row in rows}
    return [resource for resource in resources if resource["id"] not in stored]


def _wanted(stored: Version | None, resource: Mapping[str, Any]) -> bool:
    """Whether Flöde stores a shipped topic: when it never was, or when a new release changed
    it. One an administrator deleted or took out of service (a status other than active) stays
    as they left it; so does a Basic of another kind under the same id."""
    if stored is None:
        return True
    if stored.content is None:
        return False
    found = json.loads(stored.content)
    if not is_topic(found) or status_of(found) != "active":
        return False
    return {k: v for k, v in found.items() if k != "meta"} != resource


async def publish_shipped(services: Services) -> int:
    """Store the shipped topics that are missing or differ, through the update interaction as
    Flöde itself (validated, versioned, indexed, in the change feed); how many were written.
    A restart that finds them as shipped writes nothing."""
    from flode.interactions.update import update

    ctx = RequestContext.system("topics")
    written = 0
    async with services.store.pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", PUBLISH_LOCK)
        try:
            for resource in shipped():
                if _wanted(await services.store.read("Basic", resource["id"]), resource):
                    await update(services, ctx, "Basic", resource["id"], resource)
                    written += 1
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", PUBLISH_LOCK)
    if written:
        log.info("shipped subscription topics stored", written=written)
    return written
