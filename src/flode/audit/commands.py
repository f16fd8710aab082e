"""What the `flode audit …` commands do once connected (flode.audit.cli parses and connects):
each returns the command's exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flode.audit import extract as extracts
from flode.audit.prune import prune
from flode.audit.review import find
from flode.audit.seal import Conn, seal_all
from flode.audit.verify import counts, verify
from flode.context import RequestContext
from flode.fhir.errors import FhirError

OK, BROKEN, FAILED = 0, 1, 2


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


async def search_log(
    conn: Conn,
    ctx: RequestContext,
    params: Sequence[tuple[str, str]],
    limit: int,
    fmt: str,
    out: Console,
    err: Console,
) -> int:
    try:
        found = await find(
            conn, ctx, [*params, ("_count", str(limit))], default_count=limit, max_count=limit
        )
    except FhirError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        return FAILED
    if fmt == "json":
        events = [orjson.Fragment(row["content"]) for row in found.rows]
        out.print(orjson.dumps(events, option=orjson.OPT_INDENT_2).decode(), highlight=False)
    else:
        table = Table(title="Access log, newest first", title_justify="left")
        for column in ("recorded", "patient", "user", "care unit", "access", "outcome", "flags"):
            table.add_column(column, overflow="fold")
        for row in found.rows:
            table.add_row(
                row["recorded"].astimezone(extracts.SWEDEN).strftime("%Y-%m-%d %H:%M:%S"),
                row["patient_id"] or "-",
                row["agent_hsa_id"] or row["client_id"] or "-",
                row["care_unit"] or "-",
                f"{row['interaction']} ({row['action']})",
                row["outcome"],
                ", ".join(row["flags"]),
            )
        out.print(table)
    more = " (more match: narrow the search or raise --limit)" if found.next_cursor else ""
    err.print(f"{len(found.rows):,} entries{more}.", highlight=False)
    return OK


async def make_extract(
    conn: Conn,
    ctx: RequestContext,
    patient: str,
    params: Sequence[tuple[str, str]],
    fmt: str,
    err: Console,
) -> tuple[bytes, int] | None:
    """The extract in `fmt` and how many accesses it lists; None (said why) when refused."""
    try:
        found = await extracts.extract(conn, ctx, patient, params)
    except FhirError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
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
