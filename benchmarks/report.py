"""The results as a Rich table with its footnotes, and as JSON."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks.cpu import Usage
from benchmarks.loadgen import Result
from benchmarks.search import Measured, Sizes
from benchmarks.server import PostgresInfo

# The aims stated in the issue that asked for this benchmark, in requests per second.
AIMS = {"read": 2_000.0, "create": 700.0}


_POSTGRES_PLACEMENT = {
    "all": " (--postgres-cpus all): it floats, so its backends compete with the Python server "
    "for one CPU and with the load generator for the other.",
    "server": " (--postgres-cpus server): it inherits the server's CPU, so Python and "
    "PostgreSQL share one core.",
    "loadgen": " (--postgres-cpus loadgen): it shares a CPU with the load generator, so the "
    "Python server has a core to itself.",
}


@dataclass(slots=True)
class Placement:
    """Where each part of the system ran, as read back from the kernel at the end of the run."""

    server_pid: int
    server_cpus: str
    postgres_processes: int
    postgres_cpus: str
    postgres_placement: str  # all, server or loadgen: see --postgres-cpus
    client_cpus: str


@dataclass(slots=True)
class Run:
    results: list[Result]
    cpu: dict[str, Usage]
    placement: Placement
    postgres: PostgresInfo | None
    duration_s: float
    warmup_s: float
    concurrency: int
    flode_env: dict[str, str] = field(default_factory=dict)
    server_flags: list[str] = field(default_factory=list)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "workload": result.name,
        "concurrency": result.concurrency,
        "requests": result.requests,
        "errors": result.errors,
        "elapsed_s": round(result.elapsed_s, 3),
        "throughput_rps": round(result.throughput, 1),
        "latency_ms": {
            f"p{p}": None if math.isnan(v) else round(v, 3)
            for p in (50, 95, 99, 100)
            for v in (result.percentile_ms(p),)
        },
        "error_samples": result.error_samples,
    }


def aims(results: list[Result]) -> dict[str, dict[str, Any]]:
    found = {r.name: r for r in results}
    return {
        name: {
            "aim_rps": aim,
            "measured_rps": round(found[name].throughput, 1) if name in found else None,
            "met": name in found and found[name].throughput >= aim and found[name].errors == 0,
        }
        for name, aim in AIMS.items()
    }


def as_json(run: Run) -> dict[str, Any]:
    return {
        "machine": machine(),
        "postgres": (
            {"version": run.postgres.version, "settings": run.postgres.settings}
            if run.postgres
            else None
        ),
        "placement": {
            "server_pid": run.placement.server_pid,
            "server_cpus": run.placement.server_cpus,
            "postgres_processes": run.placement.postgres_processes,
            "postgres_cpus": run.placement.postgres_cpus,
            "postgres_placement": run.placement.postgres_placement,
            "load_generator_cpus": run.placement.client_cpus,
        },
        "duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "flode_env": run.flode_env,
        "server_flags": run.server_flags,
        "results": [_result_json(r) for r in run.results],
        "cpu_cores_used": {
            name: {
                "server": round(u.server, 3),
                "postgres": round(u.postgres, 3),
                "load_generator": round(u.client, 3),
                "other": round(u.other, 3),
            }
            for name, u in run.cpu.items()
        },
        "aims": aims(run.results),
    }


def print_report(console: Console, run: Run, requests: dict[str, str]) -> None:
    table = Table(title="Flöde FHIR R4 — Patient throughput and latency", title_justify="left")
    table.add_column("Workload")
    table.add_column("Request")
    table.add_column("Conc.", justify="right")
    table.add_column("Requests", justify="right")
    table.add_column("Errors", justify="right")
    table.add_column("Req/s", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p95 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    for r in run.results:
        errors = f"[bold red]{r.errors}[/]" if r.errors else "0"
        table.add_row(
            r.name,
            escape(requests.get(r.name, "")),
            str(r.concurrency),
            f"{r.requests:,}",
            errors,
            f"{r.throughput:,.0f}",
            _ms(r.percentile_ms(50)),
            _ms(r.percentile_ms(95)),
            _ms(r.percentile_ms(99)),
        )
    console.print(table)

    usage = Table(
        title="CPU use while measuring, in % of one core (2 cores = 200 %)",
        title_justify="left",
    )
    usage.add_column("Workload")
    for column in ("Server (Python)", "PostgreSQL", "Load generator", "Other processes"):
        usage.add_column(column, justify="right")
    for r in run.results:
        u = run.cpu.get(r.name)
        if u is not None:
            other = f"{u.other:.0%}"
            usage.add_row(
                r.name,
                f"{u.server:.0%}",
                f"{u.postgres:.0%}",
                f"{u.client:.0%}",
                f"[bold red]{other}[/]" if u.other > 0.1 else other,
            )
    console.print(usage)

    for r in run.results:
        for sample in r.error_samples:
            console.print(f"[red]{escape(r.name)} error:[/] {escape(sample)}", soft_wrap=True)

    info = machine()
    place = run.placement
    pg = run.postgres
    notes = [
        f"Machine: {info['cpu']}, {info['cores']} cores; {info['system']}; "
        f"{info['implementation']} {info['python']}.",
        (
            f"PostgreSQL {pg.version} (embedded, pgserver): "
            + ", ".join(f"{k}={v}" for k, v in sorted(pg.settings.items()))
            + "."
            if pg
            else "PostgreSQL: version not available."
        ),
        f"Placement: the Python server process (pid {place.server_pid}) on CPU "
        f"{place.server_cpus}; the load generator on CPU {place.client_cpus}; "
        f"PostgreSQL ({place.postgres_processes} processes at the end of the run) on CPU "
        f"{place.postgres_cpus}" + _POSTGRES_PLACEMENT.get(place.postgres_placement, "."),
        f"Closed loop: each connection sends its next request when the previous response "
        f"arrived; {run.warmup_s:g} s warm-up (discarded) then {run.duration_s:g} s measured per "
        f"workload; one fresh server and database per run; synchronous commit as configured.",
    ]
    busiest = max(run.cpu.values(), key=lambda u: u.other, default=None)
    if busiest is not None and busiest.other > 0.1:
        notes.append(
            f"Other processes used up to {busiest.other:.0%} of a core during a workload: the "
            "machine was not quiet, so these numbers understate what Flöde does alone."
        )
    if "--insecure-dev" in run.server_flags:
        notes.append("Authentication off (flode serve --insecure-dev): token checks not measured.")
    else:
        notes.append("Every request carries an operator's access token (authentication on).")
    if run.flode_env:
        notes.append(
            "Server environment: " + ", ".join(f"{k}={v}" for k, v in run.flode_env.items())
        )
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]", soft_wrap=False)

    for name, aim in aims(run.results).items():
        measured = aim["measured_rps"]
        mark = "[green]met[/]" if aim["met"] else "[bold red]not met[/]"
        shown = "not run" if measured is None else f"{measured:,.0f}/s"
        console.print(f"Aim: {name} ≥ {aim['aim_rps']:,.0f}/s — measured {shown}: {mark}")


@dataclass(slots=True)
class SearchRun:
    duration_s: float
    concurrency: int
    cache: str
    sizes: Sizes = field(default_factory=Sizes)
    postgres: PostgresInfo | None = None
    placement: Placement | None = None
    server_flags: list[str] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(
            m.result.errors
            for found in self.sizes.by_size.values()
            for m in found
            if m.result is not None
        )


def _not_measured(m: Measured) -> str | None:
    """Why a query has no numbers: it was refused (400 until a feature lands, say)."""
    return None if m.result is not None else f"n/a (status {m.probe.status})"


def _found(m: Measured) -> str:
    if m.result is None:
        return "–"
    total = "?" if m.probe.total is None else f"{m.probe.total:,}"
    return total + (f" +{m.probe.included:,}" if m.probe.included else "")


def print_search_report(console: Console, run: SearchRun) -> None:
    sizes = list(run.sizes.by_size)
    table = Table(
        title="Flöde FHIR R4 — search latency on Synthea data (ms; p50 / p95)",
        title_justify="left",
    )
    table.add_column("Query")
    for patients in sizes:
        resources = run.sizes.resources.get(patients, 0)
        table.add_column(f"{patients:,} patients\n({resources:,} res.)", justify="right")
        table.add_column("Req/s", justify="right")
        table.add_column("Found", justify="right")
    names = [m.query.name for m in run.sizes.by_size[sizes[0]]] if sizes else []
    for i, name in enumerate(names):
        cells = [name]
        for patients in sizes:
            m = run.sizes.by_size[patients][i]
            missing = _not_measured(m)
            if missing is not None or m.result is None:
                cells += [f"[yellow]{missing}[/]", "", ""]
                continue
            errors = f" [bold red]{m.result.errors} errors[/]" if m.result.errors else ""
            cells += [
                f"{_ms(m.result.percentile_ms(50))} / {_ms(m.result.percentile_ms(95))}{errors}",
                f"{m.result.throughput:,.0f}",
                _found(m),
            ]
        table.add_row(*cells)
    console.print(table)

    usage = Table(
        title="CPU time per search request (ms): Python server + PostgreSQL",
        title_justify="left",
    )
    usage.add_column("Query")
    usage.add_column("Request")
    for patients in sizes:
        usage.add_column(f"{patients:,} patients", justify="right")
    for i, name in enumerate(names):
        cells = [name, escape(run.sizes.by_size[sizes[0]][i].query.example)]
        for patients in sizes:
            m = run.sizes.by_size[patients][i]
            if m.result is None or m.usage is None or not m.result.requests:
                cells.append("–")
                continue
            per = m.result.elapsed_s / m.result.requests * 1e3
            cells.append(f"{m.usage.server * per:.2f} + {m.usage.postgres * per:.2f}")
        usage.add_row(*cells)
    console.print(usage)

    for patients in sizes:
        for m in run.sizes.by_size[patients]:
            if m.result is None and m.probe.problem:
                console.print(
                    f"[dim]{patients} patients, {escape(m.query.name)}: {m.probe.status} "
                    f"{escape(m.probe.problem[:200])}[/]",
                    soft_wrap=True,
                )
            if m.result is not None:
                for sample in m.result.error_samples:
                    console.print(
                        f"[red]{escape(m.query.name)} error:[/] {escape(sample)}", soft_wrap=True
                    )
    notes = [
        f"Each query: {run.concurrency} connections, closed loop, {run.duration_s:g} s measured "
        "after a short warm-up; each request searches for one of up to 40 values (patients, "
        "names, identifiers, codes, months) picked from the original 100 patients, which every "
        "data size holds. Found: Bundle.total of the first request (+ included resources).",
        "Data: the 100 Synthea patients of ../shared/data/synthea; 1 000 are 10 re-identified "
        f"copies of them. Loaded over HTTP once and kept in {run.cache}.",
    ]
    if run.placement is not None:
        place = run.placement
        notes.append(
            f"Placement: the Python server on CPU {place.server_cpus}, the load generator on "
            f"CPU {place.client_cpus}, PostgreSQL on CPU {place.postgres_cpus}."
        )
    if "--insecure-dev" in run.server_flags:
        notes.append("Authentication off (flode serve --insecure-dev): token checks not measured.")
    else:
        notes.append("Every request carries an operator's access token (authentication on).")
    for note in notes:
        console.print(f"[dim]{escape(note)}[/]")


def search_json(run: SearchRun) -> dict[str, Any]:
    return {
        "duration_s": run.duration_s,
        "concurrency": run.concurrency,
        "server_flags": run.server_flags,
        "sizes": {
            str(patients): {
                "resources": run.sizes.resources.get(patients),
                "queries": [
                    {
                        "query": m.query.name,
                        "request": m.query.example,
                        "status": m.probe.status,
                        "total": m.probe.total,
                        "matches": m.probe.matches,
                        "included": m.probe.included,
                        "problem": m.probe.problem or None,
                        "result": _result_json(m.result) if m.result is not None else None,
                        "cpu_ms_per_request": (
                            {
                                "server": round(m.usage.server * per, 3),
                                "postgres": round(m.usage.postgres * per, 3),
                            }
                            if m.usage is not None
                            and m.result is not None
                            and m.result.requests
                            and (per := m.result.elapsed_s / m.result.requests * 1e3)
                            else None
                        ),
                    }
                    for m in found
                ],
            }
            for patients, found in run.sizes.by_size.items()
        },
    }
