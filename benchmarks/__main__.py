"""`python -m benchmarks`: start a fresh Flöde, drive each workload at it, print a table."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from rich.console import Console

from benchmarks import cpu, loadgen
from benchmarks.patients import PatientFactory
from benchmarks.report import Placement, Run, as_json, print_report
from benchmarks.server import FlodeServer, affinity, describe_cpus
from benchmarks.workloads import WORKLOADS, State


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Flöde's create, read, update and history throughput and latency "
        "against a fresh server with its embedded PostgreSQL.",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, metavar="SECONDS", help="per workload [10]"
    )
    parser.add_argument("--concurrency", type=int, default=16, metavar="N", help="connections [16]")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        metavar="SECONDS",
        help="discarded warm-up before each workload [duration/5, at most 2]",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=1_000_000,
        metavar="N",
        help="stop a workload after this many requests even before its duration [1000000]",
    )
    parser.add_argument(
        "--postgres-cpus",
        choices=("all", "server", "loadgen"),
        default="all",
        help="where PostgreSQL runs: on every CPU (it floats), on the server's CPU, or on the "
        "load generator's CPU [all]",
    )
    parser.add_argument("--seed", type=int, default=1, help="for the generated data [1]")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.max_requests < 1:
        parser.error("--duration, --concurrency and --max-requests must be positive")
    if args.warmup is None:
        args.warmup = min(2.0, args.duration / 5)
    return args


async def measure(
    server: FlodeServer, args: argparse.Namespace, console: Console
) -> tuple[list[loadgen.Result], dict[str, cpu.Usage]]:
    state = State(server.port, PatientFactory(args.seed), random.Random(args.seed))
    results, usages = [], {}
    for workload in WORKLOADS:
        concurrency = 1 if workload.sequential else args.concurrency
        make, hook = workload.build(state)
        for phase, duration in (("warm-up", args.warmup), ("measuring", args.duration)):
            if duration <= 0:
                continue
            with console.status(f"{workload.name}: {phase} ({duration:g} s, c={concurrency})…"):
                before = cpu.sample(server.pid, server.postgres_processes())
                result = await loadgen.run(
                    workload.name,
                    server.port,
                    make,
                    concurrency=concurrency,
                    duration_s=duration,
                    max_requests=args.max_requests,
                    hook=hook,
                )
                after = cpu.sample(server.pid, server.postgres_processes())
        results.append(result)
        usages[workload.name] = cpu.usage(before, after)
        console.print(
            f"[dim]{workload.name}: {result.requests:,} requests, {result.errors} errors, "
            f"{result.throughput:,.0f}/s[/]"
        )
    return results, usages


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: do not squeeze the table into 80 columns
        console = Console(width=max(console.width, 132))
    available = sorted(os.sched_getaffinity(0))
    # The server gets one CPU, the load generator another; with one CPU both share it.
    server_cpu, client_cpu = (available[0], available[1]) if len(available) > 1 else (None, None)
    if server_cpu is None:
        console.print("[yellow]Only one CPU is available: nothing is pinned.[/]")

    postgres_cpus = {
        "all": set(available),
        "server": None,  # it inherits the server's CPU
        "loadgen": {client_cpu} if client_cpu is not None else None,
    }[args.postgres_cpus]
    server = FlodeServer(server_cpu, postgres_cpus=postgres_cpus)
    try:
        with console.status("Starting a fresh Flöde with its embedded PostgreSQL…"):
            server.start()
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            postgres = runner.run(server.postgres_info())
            results, usages = runner.run(measure(server, args, console))
        placement = Placement(
            server_pid=server.pid,
            server_cpus=describe_cpus(affinity(server.pid)),
            postgres_processes=len(server.postgres_processes()),
            postgres_cpus=" / ".join(
                sorted({describe_cpus(affinity(p)) for p in server.postgres_processes()})
            )
            or "?",
            postgres_placement=args.postgres_cpus,
            client_cpus=describe_cpus(affinity(0)),
        )
    finally:
        with console.status("Stopping Flöde and its PostgreSQL…"):
            server.stop()

    run = Run(
        results=results,
        cpu=usages,
        placement=placement,
        postgres=postgres,
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        flode_env={k: v for k, v in sorted(os.environ.items()) if k.startswith("FLODE_")},
    )
    print_report(console, run, {w.name: w.request for w in WORKLOADS})
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(as_json(run), option=orjson.OPT_INDENT_2))
        console.print(f"[dim]Results written to {args.json}[/]")
    return 1 if any(r.errors for r in results) else 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when it is there (it comes with uvicorn[standard]): a faster load generator."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("Interrupted; the server and its PostgreSQL were stopped.", file=sys.stderr)
        sys.exit(130)
