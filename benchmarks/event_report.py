"""The events benchmark's numbers: commit-to-delivery latency per channel, what was lost or
came twice, and how fast the events flowed; as a Rich table with its footnotes, and as JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.cpu import Usage
from benchmarks.event_sinks import Arrivals
from benchmarks.loadgen import Result
from benchmarks.report import machine

AIM_RATE = 200.0
"""The issue's aim: p50 commit-to-delivery below `AIM_P50_MS` at this many writes/s."""
AIM_P50_MS = 50.0


@dataclass(frozen=True, slots=True)
class Written:
    """One resource written: its `meta.lastUpdated` and when its 201 arrived (ns, wall clock)."""

    stamped_ns: int
    answered_ns: int


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when there are none)."""
    if not ordered:
        return math.nan
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass(frozen=True, slots=True)
class Channel:
    """How the events of one workload's writes reached one channel."""

    channel: str
    delivered: int
    lost: int
    duplicates: int
    from_commit_ms: list[float]
    """First arrival minus `meta.lastUpdated`, sorted."""
    from_response_ms: list[float]
    """First arrival minus the moment the 201 was read, sorted (negative: it came first)."""
    events_per_s: float
    drained_s: float | None
    """From the last write answered to the last event arrived (None: some never arrived)."""

    @property
    def before_response(self) -> int:
        return sum(1 for v in self.from_response_ms if v < 0)


def channel_of(
    arrivals: Arrivals,
    writes: dict[str, Written],
    ids: list[str],
    started_ns: int,
    ended_ns: int,
) -> Channel:
    """The channel's numbers for the writes `ids`, written from `started_ns` until `ended_ns`."""
    first = arrivals.first_ns
    found = [id for id in ids if id in first]
    last = max((first[id] for id in found), default=started_ns)
    lost = len(ids) - len(found)
    return Channel(
        channel=arrivals.channel,
        delivered=len(found),
        lost=lost,
        duplicates=sum(arrivals.repeats.get(id, 0) for id in ids),
        from_commit_ms=sorted((first[id] - writes[id].stamped_ns) / 1e6 for id in found),
        from_response_ms=sorted((first[id] - writes[id].answered_ns) / 1e6 for id in found),
        events_per_s=len(found) / max((last - started_ns) / 1e9, 1e-9),
        drained_s=None if lost else max(last - ended_ns, 0) / 1e9,
    )


@dataclass(slots=True)
class Workload:
    """One measured workload: its writes and what each channel made of them."""

    name: str
    rate: float | None
    """The fixed rate asked for; None for the sustained (closed-loop) workload."""
    writes: Result
    channels: list[Channel] = field(default_factory=list)
    usage: Usage | None = None
    nats_cores: float = 0.0


@dataclass(slots=True)
class EventsRun:
    workloads: list[Workload]
    duration_s: float
    warmup_s: float
    concurrency: int
    placement: str
    server_flags: list[str]
    nats: str | None
    """The NATS server's version line, or None when no nats-server was found."""

    @property
    def lost(self) -> int:
        return sum(c.lost for w in self.workloads for c in w.channels)

    @property
    def errors(self) -> int:
        return sum(w.writes.errors for w in self.workloads)


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:,.1f}"


def _row(w: Workload, c: Channel, first: bool) -> list[str]:
    writes = w.writes
    errors = f" [bold red]({writes.errors} errors)[/]" if writes.errors else ""
    lost = f"[bold red]{c.lost:,}[/]" if c.lost else "0"
    duplicates = f"[yellow]{c.duplicates:,}[/]" if c.duplicates else "0"
    return [
        escape(w.name) if first else "",
        f"{writes.requests:,}{errors}" if first else "",
        f"{writes.throughput:,.0f}" if first else "",
        c.channel,
        lost,
        duplicates,
        _ms(percentile(c.from_commit_ms, 50)),
        _ms(percentile(c.from_commit_ms, 95)),
        _ms(percentile(c.from_commit_ms, 99)),
        _ms(percentile(c.from_response_ms, 50)),
        f"{c.events_per_s:,.0f}",
        "–" if c.drained_s is None else f"{c.drained_s:.2f}",
    ]


def print_events_report(console: Console, run: EventsRun) -> None:
    table = Table(
        title="Flöde events — commit-to-delivery latency (ms) and throughput", title_justify="left"
    )
    table.add_column("Workload", no_wrap=True)
    for name in ("Writes", "Writes/s", "Channel", "Lost", "Dup."):
        table.add_column(name, justify="left" if name == "Channel" else "right")
    for name in ("p50", "p95", "p99", "p50 after\n201", "Events/s", "Drained\ns"):
        table.add_column(name, justify="right", min_width=7)
    for w in run.workloads:
        for i, c in enumerate(w.channels):
            table.add_row(*_row(w, c, i == 0), end_section=i == len(w.channels) - 1)
    console.print(table)

    usage = Table(title="CPU use while writing, in % of one core", title_justify="left")
    usage.add_column("Workload")
    for column in ("Server (Python)", "PostgreSQL", "NATS", "Benchmark", "Other"):
        usage.add_column(column, justify="right")
    for w in run.workloads:
        if w.usage is not None:
            u = w.usage
            other = max(u.other - w.nats_cores, 0.0)
            usage.add_row(
                escape(w.name),
                f"{u.server:.0%}",
                f"{u.postgres:.0%}",
                f"{w.nats_cores:.0%}",
                f"{u.client:.0%}",
                f"[bold red]{other:.0%}[/]" if other > 0.1 else f"{other:.0%}",
            )
    console.print(usage)
    for w in run.workloads:
        for sample in w.writes.error_samples:
            console.print(f"[red]{escape(w.name)} error:[/] {escape(sample)}", soft_wrap=True)
    for note in _notes(run):
        console.print(f"[dim]{escape(note)}[/]")
    for line in aim_lines(run):
        console.print(line)


def _notes(run: EventsRun) -> list[str]:
    info = machine()
    return [
        "Each write is a POST /Observation of a final laboratory result: one event of the "
        "shipped topic lab-result-final (a rest-hook Subscription, id-only, on a receiver on "
        "127.0.0.1) and one message flode.Observation.create on the JetStream stream (an "
        "ordered push consumer). Receiver, consumer and load generator share the benchmark's "
        "process.",
        "p50/p95/p99: from the write's meta.lastUpdated (stamped by the server inside the "
        "write's transaction, just before it commits) to the event's first arrival. p50 after "
        "201: from the moment the client read the write's response (after the commit) to the "
        "first arrival; negative when the event came first. Both are the same machine's wall "
        "clock (CLOCK_REALTIME).",
        f"Fixed rate: open loop, each write sent on schedule whatever the server answered, "
        f"{run.warmup_s:g} s warm-up (not counted) then {run.duration_s:g} s. Sustained: "
        f"{run.concurrency} connections, closed loop, {run.duration_s:g} s. Events/s: events "
        "delivered over the time from the first write to the last arrival. Drained: from the "
        "last write answered to the last event arrived. Lost: never arrived (waited for after "
        "the writes); Dup.: arrived more than once.",
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['implementation']} "
        f"{info['python']}. {run.placement}",
        f"NATS: {run.nats}." if run.nats else "NATS: no nats-server found, not measured.",
        (
            "Authentication off (flode serve --insecure-dev): token checks not measured."
            if "--insecure-dev" in run.server_flags
            else "Every request carries an operator's access token."
        ),
    ]


def _aim(run: EventsRun) -> tuple[Workload | None, bool]:
    found = next((w for w in run.workloads if w.rate == AIM_RATE), None)
    if found is None or not found.channels:
        return found, False
    met = all(percentile(c.from_commit_ms, 50) < AIM_P50_MS and c.lost == 0 for c in found.channels)
    return found, met and found.writes.errors == 0


def aim_lines(run: EventsRun) -> list[str]:
    found, met = _aim(run)
    aim = f"Aim: commit-to-delivery p50 < {AIM_P50_MS:g} ms at {AIM_RATE:g} writes/s"
    if found is None:
        return [f"{aim} — not run (--rate {AIM_RATE:g} measures it)"]
    measured = ", ".join(
        f"{c.channel} {_ms(percentile(c.from_commit_ms, 50))} ms"
        + (f" ({c.lost} lost)" if c.lost else "")
        for c in found.channels
    )
    mark = "[green]met[/]" if met else "[bold red]not met[/]"
    return [f"{aim} — measured {measured}: {mark}"]


def _round(value: float, digits: int = 2) -> float | None:
    return None if math.isnan(value) else round(value, digits)


def _channel_json(c: Channel) -> dict[str, Any]:
    return {
        "channel": c.channel,
        "delivered": c.delivered,
        "lost": c.lost,
        "duplicates": c.duplicates,
        "from_commit_ms": {
            f"p{p}": _round(percentile(c.from_commit_ms, p)) for p in (50, 95, 99, 100)
        },
        "from_response_ms": {
            f"p{p}": _round(percentile(c.from_response_ms, p)) for p in (50, 95, 99, 100)
        },
        "arrived_before_response": c.before_response,
        "events_per_s": round(c.events_per_s, 1),
        "drained_s": None if c.drained_s is None else round(c.drained_s, 3),
    }


def events_json(run: EventsRun) -> dict[str, Any]:
    found, met = _aim(run)
    return {
        "machine": machine(),
        "duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "placement": run.placement,
        "server_flags": run.server_flags,
        "nats": run.nats,
        "workloads": [
            {
                "workload": w.name,
                "rate": w.rate,
                "writes": w.writes.requests,
                "errors": w.writes.errors,
                "connections": w.writes.concurrency,
                "writes_per_s": round(w.writes.throughput, 1),
                "write_latency_ms": {
                    f"p{p}": _round(w.writes.percentile_ms(p)) for p in (50, 95, 99)
                },
                "channels": [_channel_json(c) for c in w.channels],
                "cpu_cores_used": (
                    {
                        "server": round(w.usage.server, 3),
                        "postgres": round(w.usage.postgres, 3),
                        "nats": round(w.nats_cores, 3),
                        "benchmark": round(w.usage.client, 3),
                        "other": round(max(w.usage.other - w.nats_cores, 0.0), 3),
                    }
                    if w.usage is not None
                    else None
                ),
                "error_samples": w.writes.error_samples,
            }
            for w in run.workloads
        ],
        "aim": {
            "rate": AIM_RATE,
            "p50_ms_below": AIM_P50_MS,
            "measured": found is not None,
            "met": met,
        },
    }
