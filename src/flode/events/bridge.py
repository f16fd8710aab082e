"""The change feed on an event bus: every sequenced event published to a NATS JetStream
stream, subject `flode.<type>.<action>` (e.g. `flode.Observation.create`), in event-number
order, each with `Nats-Msg-Id` = its event number so the stream drops the duplicates a restart
can send again (at-least-once delivery becomes exactly-once in the stream, within its
duplicate window).

A batch is sent without waiting for each acknowledgement in turn (one round trip for the batch,
not one per event). Each message after the first carries `Nats-Expected-Last-Msg-Id`, the event
before it: the stream stores it only right after that one, so when a message is lost, every
later one of the batch is refused too, and sending the batch again cannot store them out of
order. (The stream checks for a duplicate before it checks the expectation, so what was stored
already is acknowledged as a duplicate.) When the stream refused part of a batch (a message
that is not Flöde's came in between, say), the batch is sent again one message at a time,
each after the one before was acknowledged.

`Publisher` is the interface; `MemoryPublisher` its in-memory twin for tests.
"""

from __future__ import annotations

import asyncio
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


TIMEOUT_SECONDS = 10.0
"""How long a batch may wait for its acknowledgements."""


class Refused(Exception):
    """The stream refused a message (JetStream's error, as it described it)."""


def headers(event: Event, previous: Event | None) -> dict[str, str]:
    """The message's id and, after the first of a batch, the message the stream must hold last."""
    found = {"Nats-Msg-Id": str(event.event)}
    if previous is not None:
        found["Nats-Expected-Last-Msg-Id"] = str(previous.event)
    return found


class JetStreamPublisher:
    def __init__(self, connection: Any, stream: str, timeout: float = TIMEOUT_SECONDS) -> None:
        self.connection = connection
        self.js = connection.jetstream()
        self.stream = stream
        self.timeout = timeout

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
        """All or nothing in the stream's order: the batch at once, or, if the stream refused
        part of it (a message that is not Flöde's came in between, say), one at a time."""
        if len(events) > 1:
            try:
                await self._pipelined(events)
                return
            except Refused:
                pass
        for event in events:
            await self.js.publish(
                subject(event),
                message(event),
                timeout=self.timeout,
                stream=self.stream,
                headers=headers(event, None),
            )

    async def _pipelined(self, events: Sequence[Event]) -> None:
        """Send every message, each asking for its acknowledgement on a subject of its own,
        then wait for them all; `Refused` if the stream refused one."""
        connection = self.connection
        inbox = connection.new_inbox()
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Future[None]] = [loop.create_future() for _ in events]

        async def acknowledged(reply: Any) -> None:
            ack = acks[int(reply.subject.rsplit(".", 1)[1])]
            if ack.done():
                return
            if (reply.headers or {}).get("Status") == "503":
                ack.set_exception(Refused(f"no stream takes {subject(events[0])}"))
                return
            answer = orjson.loads(reply.data or b"{}")
            if "error" in answer:
                ack.set_exception(Refused(str(answer["error"])))
            else:
                ack.set_result(None)

        replies = await connection.subscribe(f"{inbox}.*", cb=acknowledged)
        try:
            async with asyncio.timeout(self.timeout):
                previous = None
                for n, event in enumerate(events):
                    await connection.publish(
                        subject(event),
                        message(event),
                        reply=f"{inbox}.{n}",
                        headers=headers(event, previous) | {"Nats-Expected-Stream": self.stream},
                    )
                    previous = event
                await asyncio.gather(*acks)
        finally:
            for ack in acks:
                ack.cancel()  # no-op for those done; nobody waits for the others
            with contextlib.suppress(Exception):
                await replies.unsubscribe()

    async def close(self) -> None:
        await self.connection.drain()
