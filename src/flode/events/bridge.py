"""The change feed on an event bus: every sequenced event published to a NATS JetStream
stream, subject `flode.<type>.<action>` (e.g. `flode.Observation.create`), in event-number
order, each with `Nats-Msg-Id` = its event number so the stream drops the duplicates a restart
can send again (at-least-once delivery becomes exactly-once in the stream, within its
duplicate window).

`Publisher` is the interface; `MemoryPublisher` its in-memory twin for tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from flode.events.outbox import Event
from flode.fhir.dates import format_instant


def subject(event: Event) -> str:
    return f"flode.{event.resource_type}.{event.action}"


def message(event: Event) -> bytes:
    return orjson.dumps(
        {
            "event": event.event,
            "resourceType": event.resource_type,
            "id": event.resource_id,
            "version": event.version,
            "action": event.action,
            "patients": list(event.patients),
            "occurred": format_instant(event.occurred),
        }
    )


class Publisher(Protocol):
    async def publish(self, events: Sequence[Event]) -> None:
        """Publish in order; return only when every event is stored (raise otherwise)."""

    async def close(self) -> None: ...


class MemoryPublisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, str]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            self.published.append((subject(event), message(event), str(event.event)))

    async def close(self) -> None:
        pass


class JetStreamPublisher:
    def __init__(self, connection: Any, stream: str) -> None:
        self.connection = connection
        self.js = connection.jetstream()
        self.stream = stream

    @classmethod
    async def connect(cls, url: str, stream: str) -> JetStreamPublisher:
        """Connect and make sure the stream exists (subjects `flode.>`)."""
        import nats
        from nats.js.errors import BadRequestError

        connection = await nats.connect(url, name="flode", max_reconnect_attempts=-1)
        publisher = cls(connection, stream)
        # An existing stream keeps the settings an operator chose for it.
        with contextlib.suppress(BadRequestError):
            await publisher.js.add_stream(name=stream, subjects=["flode.>"])
        return publisher

    async def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            await self.js.publish(
                subject(event),
                message(event),
                timeout=10,
                stream=self.stream,
                headers={"Nats-Msg-Id": str(event.event)},
            )

    async def close(self) -> None:
        await self.connection.drain()
