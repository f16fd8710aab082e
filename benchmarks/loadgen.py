"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams.

N keep-alive connections each loop request → response as fast as the server answers. Only the
status line, the Content-Length (or chunked) body and the Connection header are parsed, so one
core of client drives far more requests per second than one core of server can answer. It only
ever talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"
TOKEN = ""
"""The access token every request carries (set when the server under test has started)."""
_STREAM_LIMIT = 1 << 20  # the longest header block accepted
_ERROR_SAMPLES = 3
_SAMPLE_CHARS = 600

# Makes the next request's bytes.
RequestFactory = Callable[[], bytes]
# Sees each 2xx response: (status, header block, body). May raise to count the response as an
# error (a body that is not what the workload expected, say).
ResponseHook = Callable[[int, bytes, bytes], None]


class ProtocolError(Exception):
    pass


def request(
    method: str,
    path: str,
    port: int,
    body: bytes | None = None,
    content_type: str = "application/fhir+json",
) -> bytes:
    """One HTTP/1.1 request, ready to write."""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Accept: application/fhir+json",
        "User-Agent: flode-bench",
    ]
    if TOKEN:
        lines.append(f"Authorization: Bearer {TOKEN}")
    if body is not None:
        lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + body if body is not None else head


def _header(head: bytes, name: bytes) -> bytes | None:
    """The value of header `name` (lower case, with the colon) in a raw header block."""
    at = head.find(b"\r\n" + name)
    if at < 0:
        lower = head.lower()
        at = lower.find(b"\r\n" + name)
        if at < 0:
            return None
    start = at + 2 + len(name)
    end = head.find(b"\r\n", start)
    return head[start:end].strip()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        if size == 0:
            await _skip_trailers(reader)
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes, bool]:
    """(status, header block, body, keep-alive) of the next response on `reader`."""
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or len(head) < 12:
        raise ProtocolError(f"not an HTTP/1.x response: {head[:80]!r}")
    status = int(head[9:12])
    length = _header(head, b"content-length:")
    if length is not None:
        size = int(length)
        body = await reader.readexactly(size) if size else b""
    elif (_header(head, b"transfer-encoding:") or b"").lower() == b"chunked":
        body = await _read_chunked(reader)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()  # delimited by the end of the connection
        return status, head, body, False
    connection = (_header(head, b"connection:") or b"").lower()
    return status, head, body, connection != b"close"


@dataclass(slots=True)
class Result:
    """What one run of one workload measured."""

    name: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds (NaN when there are none)."""
        if not self.latencies_ns:
            return math.nan
        ordered = sorted(self.latencies_ns)
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        return ordered[rank - 1] / 1e6

    def error(self, sample: str) -> None:
        self.errors += 1
        if len(self.error_samples) < _ERROR_SAMPLES:
            self.error_samples.append(sample[:_SAMPLE_CHARS])


@dataclass(slots=True)
class _Run:
    result: Result
    deadline_ns: int
    max_requests: int
    issued: int = 0

    def more(self) -> bool:
        return self.issued < self.max_requests and time.perf_counter_ns() < self.deadline_ns


def _answered(
    result: Result, status: int, head: bytes, body: bytes, hook: ResponseHook | None
) -> None:
    """Count a response; a non-2xx one, or a 2xx one `hook` rejects, is an error."""
    result.requests += 1
    if not 200 <= status < 300:
        result.error(f"{status}: {body.decode('utf-8', 'replace')}")
    elif hook is not None:
        try:
            hook(status, head, body)
        except Exception as exc:
            result.error(f"{status}, unexpected body ({exc!r}): {body[:300]!r}")


async def _connection(
    port: int, make: RequestFactory, hook: ResponseHook | None, run: _Run
) -> None:
    result = run.result
    latencies = result.latencies_ns
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        while run.more():
            if writer is None or reader is None:
                try:
                    reader, writer = await asyncio.open_connection(HOST, port, limit=_STREAM_LIMIT)
                except OSError as exc:
                    result.error(f"connect: {type(exc).__name__}: {exc}")
                    return  # nothing listens: stop this connection rather than spin
            payload = make()
            run.issued += 1
            started = time.perf_counter_ns()
            try:
                writer.write(payload)
                status, head, body, keep_alive = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                result.error(f"transport: {type(exc).__name__}: {exc}")
                writer.close()
                reader = writer = None
                continue
            latencies.append(time.perf_counter_ns() - started)
            _answered(result, status, head, body, hook)
            if not keep_alive:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def run(
    name: str,
    port: int,
    make: RequestFactory,
    *,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    hook: ResponseHook | None = None,
) -> Result:
    """Drive `concurrency` connections for `duration_s` seconds or `max_requests` requests,
    whichever ends first; requests in flight at the deadline are awaited and counted."""
    result = Result(name, concurrency)
    started = time.perf_counter_ns()
    state = _Run(result, started + int(duration_s * 1e9), max_requests)
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(_connection(port, make, hook, state))
    result.elapsed_s = (time.perf_counter_ns() - started) / 1e9
    return result


_PACED_IDLE_NS = 2_000_000_000


@dataclass(slots=True)
class _Paced:
    result: Result
    slots: asyncio.Semaphore
    """One per connection that may be open at once."""
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, int]] = field(default_factory=list)
    """Connections not in use, with when they were last used (ns)."""
    open: int = 0
    most_open: int = 0

    def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The connection used last, if any; those idle long enough that the server may be
        closing them (uvicorn does after 5 s) are closed instead."""
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.perf_counter_ns() - since < _PACED_IDLE_NS:
                return reader, writer
            writer.close()
            self.open -= 1
        return None


async def _paced_request(
    port: int, payload: bytes, due_ns: int, hook: ResponseHook | None, state: _Paced
) -> None:
    """One request of `paced` on an idle connection (a new one when none is idle); its latency
    counts from when it was due, so a server that falls behind shows in it."""
    async with state.slots:
        await _paced_on_connection(port, payload, due_ns, hook, state)


async def _paced_on_connection(
    port: int, payload: bytes, due_ns: int, hook: ResponseHook | None, state: _Paced
) -> None:
    result = state.result
    taken = state.take()
    if taken is not None:
        reader, writer = taken
    else:
        try:
            reader, writer = await asyncio.open_connection(HOST, port, limit=_STREAM_LIMIT)
        except OSError as exc:
            result.error(f"connect: {type(exc).__name__}: {exc}")
            return
        state.open += 1
        state.most_open = max(state.most_open, state.open)
    try:
        writer.write(payload)
        status, head, body, keep_alive = await read_response(reader)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        result.error(f"transport: {type(exc).__name__}: {exc}")
        keep_alive = False
    else:
        result.latencies_ns.append(time.perf_counter_ns() - due_ns)
        _answered(result, status, head, body, hook)
    if keep_alive:
        state.idle.append((reader, writer, time.perf_counter_ns()))
    else:
        writer.close()
        state.open -= 1


async def paced(
    name: str,
    port: int,
    make: RequestFactory,
    *,
    rate: float,
    duration_s: float,
    hook: ResponseHook | None = None,
    max_connections: int = 256,
) -> Result:
    """Open loop: request i is sent at start + i / `rate`, whether or not earlier ones were
    answered, on as many connections as that takes (up to `max_connections`; then it waits
    for one, and the wait counts in its latency), for `duration_s` seconds. Requests in flight
    at the end are awaited and counted; `Result.concurrency` is the most connections open."""
    state = _Paced(Result(name, 0), asyncio.Semaphore(max_connections))
    started = time.perf_counter_ns()
    interval_ns = 1e9 / rate
    tasks: set[asyncio.Task[None]] = set()
    for i in range(max(1, round(rate * duration_s))):
        due = started + int(i * interval_ns)
        wait_ns = due - time.perf_counter_ns()
        if wait_ns > 0:
            await asyncio.sleep(wait_ns / 1e9)
        task = asyncio.create_task(_paced_request(port, make(), due, hook, state))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    for _, writer, _ in state.idle:
        writer.close()
    state.result.elapsed_s = (time.perf_counter_ns() - started) / 1e9
    state.result.concurrency = state.most_open
    return state.result
