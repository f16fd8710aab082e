"""How fast the access log takes entries (docs/audit.md): `flode.audit.record.append`, the
function every request that touches patient data calls, driven straight at the server's
database from several connections at once, with one entry per call (a read) and with twenty (a
search that found twenty patients). Then how fast `flode audit verify` walks the hash chain.

The server's own sealer runs meanwhile, as in production: it chains what is appended.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import policy
from benchmarks.server import FlodeServer

_SHAPES = (("read", 1), ("search, 20 patients", 20))


@dataclass(frozen=True, slots=True)
class Appended:
    shape: str
    per_call: int
    calls: int
    elapsed_s: float

    @property
    def entries_per_s(self) -> float:
        return self.calls * self.per_call / self.elapsed_s if self.elapsed_s else 0.0


@dataclass(frozen=True, slots=True)
class Verified:
    entries: int
    elapsed_s: float


async def _append_for(
    server: FlodeServer, patients: list[str], per_call: int, duration_s: float, concurrency: int
) -> int:
    from flode.audit.record import Access, append
    from flode.context import RequestContext

    ctx = RequestContext(
        request_id="bench",
        base_url=server.base_url,
        user_hsa_id=policy.CLINICIAN,
        care_unit_hsa_id=policy.UNIT,
        care_provider_hsa_id=policy.PROVIDER,
        client_id="benchmark-journal",
    )
    interaction = "read" if per_call == 1 else "search"
    deadline = time.monotonic() + duration_s
    calls = 0

    async def worker(offset: int) -> None:
        nonlocal calls
        conn = await server.connect()
        try:
            i = offset
            while time.monotonic() < deadline:
                chosen = [patients[(i + k) % len(patients)] for k in range(per_call)]
                accesses = [
                    Access(interaction, "R", p, what=[f"Patient/{p}"], detail="benchmark")
                    for p in chosen
                ]
                await append(conn, ctx, accesses)
                calls += 1
                i += per_call
        finally:
            await conn.close()

    await asyncio.gather(*(worker(n * 997) for n in range(concurrency)))
    return calls


async def measure(
    server: FlodeServer, *, duration_s: float, concurrency: int
) -> tuple[list[Appended], Verified]:
    from flode.audit.seal import seal_all
    from flode.audit.verify import verify

    conn = await server.connect()
    try:
        patients = [r["id"] for r in await conn.fetch(policy.PATIENTS)]
    finally:
        await conn.close()
    if not patients:
        patients = [str(uuid.uuid4())]
    appended = []
    for shape, per_call in _SHAPES:
        started = time.perf_counter()
        calls = await _append_for(server, patients, per_call, duration_s, concurrency)
        appended.append(Appended(shape, per_call, calls, time.perf_counter() - started))
    conn = await server.connect()
    try:
        await seal_all(conn)
        started = time.perf_counter()
        report = await verify(conn)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    if not report.intact:
        raise RuntimeError(f"the access log's hash chain is broken: {report.breaks[0].text}")
    return appended, Verified(report.sealed, elapsed)


def print_report(console: Console, appended: list[Appended], verified: Verified) -> None:
    table = Table(title="The access log: entries appended and verified", title_justify="left")
    for name in ("Work", "Entries per call", "Calls", "Entries/s"):
        table.add_column(name, justify="left" if name == "Work" else "right")
    for a in appended:
        table.add_row(
            f"append ({a.shape})", str(a.per_call), f"{a.calls:,}", f"{a.entries_per_s:,.0f}"
        )
    rate = verified.entries / verified.elapsed_s if verified.elapsed_s else 0.0
    table.add_row("verify the hash chain", "–", "–", f"{rate:,.0f}")
    console.print(table)
    console.print(
        f"[dim]Appends: flode.audit.record.append on the server's database, each call one "
        f"statement in its own transaction; verify: {verified.entries:,} entries in "
        f"{verified.elapsed_s:.1f} s.[/]"
    )


def as_json(appended: list[Appended], verified: Verified) -> dict[str, Any]:
    return {
        "append": [
            {"shape": a.shape, "per_call": a.per_call, "entries_per_s": round(a.entries_per_s)}
            for a in appended
        ],
        "verify": {"entries": verified.entries, "elapsed_s": round(verified.elapsed_s, 2)},
    }
