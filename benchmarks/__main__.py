"""`python -m benchmarks [all|crud|search|policy|load]`: start Flöde, drive each workload at
it, print tables. `crud` runs create, read, update and history against a fresh server; `search`
runs the search queries against Synthea data sets loaded once and kept; `policy` runs them as an
operator and as a clinician bound by the Swedish access rules, and measures the access log's
write rate; `all` (the default) runs all three. `load` runs `flode load` on Synthea data, with
`--fast` and through transactions. `events` measures commit-to-delivery latency and event
throughput on a rest-hook Subscription and NATS JetStream."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from benchmarks import audit, cpu, event_report, events, loader, loadgen, policy, search, synthea
from benchmarks.patients import PatientFactory
from benchmarks.report import (
    Placement,
    Run,
    SearchRun,
    as_json,
    print_report,
    print_search_report,
    search_json,
)
from benchmarks.server import FlodeServer, affinity, describe_cpus
from benchmarks.workloads import WORKLOADS, State

PATIENTS = (100, 1000)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure Flöde's create, read, update and history throughput and latency "
        "against a fresh server with its embedded PostgreSQL (crud), and the latency of typical "
        "searches on Synthea data sets (search).",
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=("all", "crud", "search", "policy", "load", "events"),
        default="all",
        help="which workloads [all: crud, search, then policy]; load: `flode load` of Synthea "
        "data, --fast and through transactions; events: subscriptions and NATS",
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
    search_options = parser.add_argument_group("search")
    search_options.add_argument(
        "--patients",
        type=int,
        nargs="+",
        choices=PATIENTS,
        default=None,
        metavar="N",
        help="data sizes to search, 100 and/or 1000 patients [search: 100 1000; all: 100]",
    )
    search_options.add_argument(
        "--search-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per query and data size [search: 5; all: 3]",
    )
    search_options.add_argument(
        "--search-concurrency", type=int, default=4, metavar="N", help="connections [4]"
    )
    search_options.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"where loaded data sets are kept [{loader.default_cache()}]",
    )
    search_options.add_argument(
        "--reload", action="store_true", help="load the data sets again even if they are cached"
    )
    load_options = parser.add_argument_group("load")
    load_options.add_argument(
        "--runs", type=int, default=2, metavar="N", help="loads per path, alternating [2]"
    )
    load_options.add_argument(
        "--load-data",
        type=Path,
        default=synthea.SYNTHEA,
        metavar="DIR",
        help="the files to load [../shared/data/synthea]",
    )
    load_options.add_argument(
        "--load-workers", type=int, default=None, metavar="N", help="[flode load's default]"
    )
    events.add_arguments(parser)
    args = parser.parse_args(argv)
    events.check_arguments(parser, args)
    if args.duration <= 0 or args.concurrency < 1 or args.max_requests < 1:
        parser.error("--duration, --concurrency and --max-requests must be positive")
    if args.warmup is None:
        args.warmup = min(2.0, args.duration / 5)
    if args.patients is None:
        args.patients = list(PATIENTS) if args.what in ("search", "policy") else [PATIENTS[0]]
    if args.search_duration is None:
        args.search_duration = 5.0 if args.what in ("search", "policy") else 3.0
    if args.search_duration <= 0 or args.search_concurrency < 1:
        parser.error("--search-duration and --search-concurrency must be positive")
    args.cache = args.cache or loader.default_cache()
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


@dataclass(frozen=True, slots=True)
class Cpus:
    """Where the server, PostgreSQL and the load generator run (None: anywhere)."""

    server: int | None
    client: int | None
    postgres: set[int] | None


def cpus(args: argparse.Namespace, console: Console) -> Cpus:
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
    return Cpus(server_cpu, client_cpu, postgres_cpus)


def placement(server: FlodeServer, args: argparse.Namespace) -> Placement:
    return Placement(
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


def start(server: FlodeServer, where: Cpus, console: Console, what: str) -> None:
    with console.status(what):
        server.start()
    if where.client is not None:
        os.sched_setaffinity(0, {where.client})


def run_crud(args: argparse.Namespace, console: Console, where: Cpus) -> Run:
    server = FlodeServer(where.server, postgres_cpus=where.postgres)
    try:
        start(server, where, console, "Starting a fresh Flöde with its embedded PostgreSQL…")
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            postgres = runner.run(server.postgres_info())
            results, usages = runner.run(measure(server, args, console))
        where_run = placement(server, args)
    finally:
        with console.status("Stopping Flöde and its PostgreSQL…"):
            server.stop()
    return Run(
        results=results,
        cpu=usages,
        placement=where_run,
        postgres=postgres,
        duration_s=args.duration,
        warmup_s=args.warmup,
        concurrency=args.concurrency,
        flode_env={k: v for k, v in sorted(os.environ.items()) if k.startswith("FLODE_")},
        server_flags=server.flags,
    )


async def _ensure_loaded(server: FlodeServer, console: Console, patients: int, loaded: bool) -> int:
    """Load the data set unless it is (cached); the number of resources it holds."""
    directory = server.data_dir
    if not loaded:
        result = await loader.load(server.port, patients, console)
        console.print(
            f"[dim]Loaded {result.loaded:,} resources in {result.elapsed_s:,.0f} s "
            f"({result.loaded / max(result.elapsed_s, 1e-9):,.0f}/s), {result.errors} errors[/]"
        )
        for sample in result.error_samples:
            console.print(f"[red]load error:[/] {sample}", soft_wrap=True)
        if result.errors:
            raise RuntimeError(f"{result.errors} resources could not be loaded")
        loader.mark_loaded(directory, result.loaded, round(result.elapsed_s, 1))
    conn = await server.connect()
    try:
        resources = int(await conn.fetchval("SELECT count(*) FROM resource WHERE NOT deleted"))
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return resources


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    """How each search query is driven: connections, duration, warm-up, seed."""
    return {
        "concurrency": args.search_concurrency,
        "duration_s": args.search_duration,
        "warmup_s": min(1.0, args.search_duration / 5),
        "seed": args.seed,
    }


async def _search_size(
    server: FlodeServer, args: argparse.Namespace, console: Console, patients: int, loaded: bool
) -> tuple[list[search.Measured], int]:
    resources = await _ensure_loaded(server, console, patients, loaded)
    with console.status("") as status:
        measured = await search.run_all(
            server,
            search.queries(args.seed),
            **_search_options(args),
            status=lambda name: status.update(f"{patients} patients: {name}…"),
        )
    return measured, resources


@contextlib.contextmanager
def _data_set(
    args: argparse.Namespace, console: Console, where: Cpus, patients: int
) -> Iterator[tuple[FlodeServer, bool]]:
    """Flöde started on the cached data set of `patients` (prepared for loading when it is
    not loaded yet): the server and whether the data is loaded."""
    directory = loader.data_dir(args.cache, patients)
    loaded = loader.is_loaded(directory) and not args.reload
    if not loaded:
        loader.prepare(directory)
    server = FlodeServer(where.server, postgres_cpus=where.postgres, data_dir=directory)
    try:
        start(server, where, console, f"Starting Flöde on the {patients}-patient data set…")
        if loaded:
            loader.mark_migrated(directory)
        yield server, loaded
    finally:
        with console.status("Stopping Flöde and its PostgreSQL…"):
            server.stop()


def run_search(args: argparse.Namespace, console: Console, where: Cpus) -> SearchRun:
    run = SearchRun(
        duration_s=args.search_duration,
        concurrency=args.search_concurrency,
        cache=str(args.cache),
    )
    for patients in args.patients:
        with _data_set(args, console, where, patients) as (server, loaded):
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                if run.postgres is None:
                    run.postgres = runner.run(server.postgres_info())
                measured, resources = runner.run(
                    _search_size(server, args, console, patients, loaded)
                )
            run.placement = placement(server, args)
            run.server_flags = server.flags
        run.sizes.by_size[patients] = measured
        run.sizes.resources[patients] = resources
        console.print(f"[dim]{patients} patients ({resources:,} resources): searched[/]")
    return run


async def _policy_size(
    server: FlodeServer, args: argparse.Namespace, console: Console, patients: int, loaded: bool
) -> tuple[list[policy.Compared], list[audit.Appended], audit.Verified]:
    await _ensure_loaded(server, console, patients, loaded)
    await policy.prepare(server, console)
    with console.status("") as status:
        compared = await policy.compare(
            server,
            search.queries(args.seed),
            **_search_options(args),
            status=lambda name: status.update(f"{patients} patients: {name}…"),
        )
        status.update("The access log: appending…")
        appended, verified = await audit.measure(
            server, duration_s=args.search_duration, concurrency=args.concurrency
        )
    return compared, appended, verified


def run_policy(
    args: argparse.Namespace, console: Console, where: Cpus
) -> tuple[dict[str, Any], int]:
    """The access rules' cost per search query, and the access log's write rate, per data
    size: the results as JSON and the number of failed requests."""
    output: dict[str, Any] = {"searches": {}}
    errors = 0
    for patients in args.patients:
        with (
            _data_set(args, console, where, patients) as (server, loaded),
            asyncio.Runner(loop_factory=_loop_factory()) as runner,
        ):
            compared, appended, verified = runner.run(
                _policy_size(server, args, console, patients, loaded)
            )
        policy.print_report(console, patients, compared)
        audit.print_report(console, appended, verified)
        output["searches"].update(policy.as_json(patients, compared))
        output[f"audit_{patients}"] = audit.as_json(appended, verified)
        errors += sum(
            m.result.errors
            for c in compared
            for m in (c.operator, c.clinician)
            if m.result is not None
        )
    return output, errors


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    if not console.is_terminal:  # piped or redirected: do not squeeze the table into 80 columns
        console = Console(width=max(console.width, 132))
    where = cpus(args, console)
    failed = False
    output: dict[str, object] = {}
    if args.what in ("all", "crud"):
        run = run_crud(args, console, where)
        print_report(console, run, {w.name: w.request for w in WORKLOADS})
        output.update(as_json(run))
        failed = any(r.errors for r in run.results)
    if args.what in ("all", "search"):
        searched = run_search(args, console, where)
        print_search_report(console, searched)
        output["search"] = search_json(searched)
        failed = failed or searched.errors > 0
    if args.what in ("all", "policy"):
        output["policy"], errors = run_policy(args, console, where)
        failed = failed or errors > 0
    if args.what == "load":
        found = loader.measure_flode_load(
            args.load_data, console, runs=args.runs, workers=args.load_workers
        )
        loader.print_flode_load(console, args.load_data, found)
        output["load"] = loader.flode_load_json(found)
        failed = any(run.failed for run in found)
    if args.what == "events":
        measured = events.run(
            args, console, (where.server, where.client, where.postgres), _loop_factory()
        )
        event_report.print_events_report(console, measured)
        output["events"] = event_report.events_json(measured)
        failed = measured.lost > 0 or measured.errors > 0
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(output, option=orjson.OPT_INDENT_2))
        console.print(f"[dim]Results written to {args.json}[/]")
    return 1 if failed else 0


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
