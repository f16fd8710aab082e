"""What the `flode audit …` commands do once connected (flode.audit.cli parses and connects):
each returns the command's exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flode.audit import extract as extracts
from flode.audit import results
from flode.audit.parameters import Given
from flode.audit.prune import prune
from flode.audit.review import find
from flode.audit.sample import Plan, draw, sample_bundle, summary, why
from flode.audit.seal import Conn, seal_all
from flode.audit.verify import counts, verify
from flode.context import RequestContext
from flode.fhir.errors import FhirError

OK, BROKEN, FAILED = 0, 1, 2
T = TypeVar("T")


async def verify_chain(conn: Conn, seal: bool, err: Console) -> int:
    if seal:
        sealed_now = await seal_all(conn)
        err.print(f"Sealed {sealed_now:,} entries.", highlight=False)
    sealed, _ = await counts(conn)
    with Progress(
        TextColumn("[bold]verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        task = progress.add_task("verifying", total=sealed)
        report = await verify(conn, lambda done: progress.update(task, completed=done))
    table = Table(title="flode audit verify", show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    table.add_row("sealed entries", f"{report.sealed:,}")
    table.add_row("unsealed entries", f"{report.unsealed:,}")
    if report.first is not None:
        table.add_row("chain positions", f"{report.first:,}–{report.last:,}")
    if report.head is not None:
        table.add_row("last hash", report.head.hex())
    table.add_row("breaks", f"{len(report.breaks):,}")
    err.print(table)
    if not report.breaks:
        err.print("[green]The chain is intact.[/green]")
        return OK
    breaks = Table(title="Breaks", title_justify="left")
    for column in ("position", "entry", "kind", "what"):
        breaks.add_column(column, overflow="fold")
    for found in report.breaks:
        breaks.add_row(f"{found.chain_pos:,}", found.id or "-", found.kind, found.text)
    err.print(breaks)
    err.print(f"[red]The chain is broken in {len(report.breaks)} place(s).[/red]")
    return BROKEN


ENTRY_COLUMNS = ("recorded", "patient", "user", "care unit", "access", "outcome", "flags")


def _when(moment: datetime) -> str:
    return moment.astimezone(extracts.SWEDEN).strftime("%Y-%m-%d %H:%M:%S")


def entry_cells(row: asyncpg.Record) -> list[str]:
    """A log entry as a row of `ENTRY_COLUMNS`."""
    return [
        _when(row["recorded"]),
        row["patient_id"] or "-",
        row["agent_hsa_id"] or row["client_id"] or "-",
        row["care_unit"] or "-",
        f"{row['interaction']} ({row['action']})",
        row["outcome"],
        ", ".join(row["flags"]),
    ]


async def unless_refused(err: Console, work: Awaitable[T]) -> T | None:
    """What `work` gives; None, once said why, when it is refused."""
    try:
        return await work
    except FhirError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        return None


def _json(out: Console, value: Any) -> None:
    out.print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), highlight=False)


@dataclass(frozen=True, slots=True)
class Listing:
    """Rows of the log (or of review results) as a table, or as their FHIR JSON."""

    title: str
    columns: tuple[str, ...]
    cells: Callable[[asyncpg.Record], list[str]]
    noun: str

    def show(
        self, out: Console, err: Console, fmt: str, rows: list[asyncpg.Record], more: bool
    ) -> int:
        if fmt == "json":
            _json(out, [orjson.Fragment(row["content"]) for row in rows])
        else:
            table = Table(title=self.title, title_justify="left")
            for column in self.columns:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*self.cells(row))
            out.print(table)
        hint = " (more match: narrow the search or raise --limit)" if more else ""
        err.print(f"{len(rows):,} {self.noun}{hint}.", highlight=False)
        return OK


async def search_log(
    conn: Conn,
    ctx: RequestContext,
    params: Sequence[tuple[str, str]],
    limit: int,
    fmt: str,
    out: Console,
    err: Console,
) -> int:
    found = await unless_refused(
        err,
        find(conn, ctx, [*params, ("_count", str(limit))], default_count=limit, max_count=limit),
    )
    if found is None:
        return FAILED
    listing = Listing("Access log, newest first", ENTRY_COLUMNS, entry_cells, "entries")
    return listing.show(out, err, fmt, found.rows, found.next_cursor is not None)


async def make_extract(
    conn: Conn,
    ctx: RequestContext,
    patient: str,
    params: Sequence[tuple[str, str]],
    fmt: str,
    err: Console,
) -> tuple[bytes, int] | None:
    """The extract in `fmt` and how many accesses it lists; None (said why) when refused."""
    found = await unless_refused(err, extracts.extract(conn, ctx, patient, params))
    if found is None:
        return None
    if fmt == "html":
        content = extracts.html_page(found).encode()
    elif fmt == "pdf":
        from flode.audit.pdf import pdf_document

        content = await asyncio.to_thread(pdf_document, found)
    else:
        content = orjson.dumps(extracts.bundle_of(ctx, found), option=orjson.OPT_INDENT_2)
    return content, len(found.lines)


async def prune_log(conn: Conn, ctx: RequestContext, days: int, err: Console) -> int:
    pruned = await prune(conn, ctx, days)
    when = f"{pruned.before:%Y-%m-%d %H:%M} UTC"
    if not pruned.removed:
        err.print(f"No entries recorded before {when} to remove.", highlight=False)
    else:
        err.print(
            f"Removed {pruned.removed:,} entries recorded before {when} (chain positions up "
            f"to {pruned.through:,}); verification starts after them.",
            highlight=False,
        )
    return OK


async def sample_log(
    conn: Conn, ctx: RequestContext, plan: Plan, fmt: str, out: Console, err: Console
) -> int:
    """Draw a sample for a review: a table (or the searchset as JSON), and what was drawn."""
    drawn = await unless_refused(err, draw(conn, ctx, plan))
    if drawn is None:
        return FAILED
    if fmt == "json":
        _json(out, sample_bundle(ctx, drawn))
    else:
        table = Table(title="Review sample", title_justify="left")
        for column in ("why", *ENTRY_COLUMNS):
            table.add_column(column, overflow="fold")
        for rows, randomly in ((drawn.systematic, False), (drawn.random, True)):
            for row in rows:
                parts = why(drawn, row, randomly)["extension"]
                how = " ".join(str(p.get("valueCode", p.get("valuePositiveInt"))) for p in parts)
                table.add_row(how, *entry_cells(row))
        out.print(table)
    for issue in summary(drawn):
        err.print(f"{issue.diagnostics}.", highlight=False)
    err.print(f"Draw it again with --seed {drawn.plan.seed}.", highlight=False)
    return OK


async def record_result(
    conn: Conn, ctx: RequestContext, given: Given, fmt: str, out: Console, err: Console
) -> int:
    content = await unless_refused(err, results.record(conn, ctx, given))
    if content is None:
        return FAILED
    if fmt == "json":
        out.print(content, highlight=False)
    recorded = orjson.loads(content)
    err.print(f"Recorded the review result {recorded['id']}.", highlight=False)
    return OK


def _result_cells(row: asyncpg.Record) -> list[str]:
    return [
        _when(row["recorded"]),
        row["reviewer_hsa_id"],
        row["care_unit"] or "-",
        row["outcome"],
        "\n".join(row["entries"]),
        row["comment"] or "",
        row["id"],
    ]


async def list_results(
    conn: Conn,
    ctx: RequestContext,
    params: Sequence[tuple[str, str]],
    limit: int,
    fmt: str,
    out: Console,
    err: Console,
) -> int:
    found = await unless_refused(
        err,
        results.find_results(
            conn, ctx, [*params, ("_count", str(limit))], default_count=limit, max_count=limit
        ),
    )
    if found is None:
        return FAILED
    columns = ("recorded", "reviewer", "care unit", "outcome", "entries", "comment", "id")
    listing = Listing("Review results, newest first", columns, _result_cells, "results")
    return listing.show(out, err, fmt, found.rows, found.next_cursor is not None)
