"""Retention (`flode audit prune`): entries are kept at least five years (DOMAIN.md L4), then
removed, oldest first, by the only path the table's trigger lets through.

What is removed is always the beginning of the chain: the sealed entries up to the first one
recorded within the retention. The position and hash of the last one removed are kept in
`audit_anchor`, where verification starts from, so a prune is told apart from entries removed
behind Flöde's back. The prune is logged itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flode.audit.record import Access, append
from flode.audit.seal import LOCK, Conn
from flode.context import RequestContext
from flode.fhir.dates import format_instant

MINIMUM_YEARS = 5


def years_before(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


def too_short(retention_days: int, now: datetime | None = None) -> bool:
    """Whether a retention keeps entries for less than five years."""
    now = now or datetime.now(UTC)
    return now - timedelta(days=retention_days) > years_before(now, MINIMUM_YEARS)


@dataclass(frozen=True, slots=True)
class Pruned:
    before: datetime
    removed: int
    through: int | None
    """The chain position of the last entry removed."""


_THROUGH = """
    SELECT coalesce(
        (SELECT min(chain_pos) - 1 FROM audit_event
         WHERE chain_pos IS NOT NULL AND recorded >= $1),
        (SELECT max(chain_pos) FROM audit_event))
"""


async def prune(
    conn: Conn, ctx: RequestContext, retention_days: int, now: datetime | None = None
) -> Pruned:
    """Remove the entries older than the retention (the caller checked that it is long
    enough), in one transaction that holds off the sealer."""
    before = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK)
        through = await conn.fetchval(_THROUGH, before)
        last = None
        if through is not None:
            last = await conn.fetchrow(
                "SELECT chain_pos, hash FROM audit_event WHERE chain_pos = $1", through
            )
        if last is None:
            return Pruned(before, 0, None)
        await conn.execute("SELECT set_config('flode.audit_prune', 'on', true)")
        status = await conn.execute("DELETE FROM audit_event WHERE chain_pos <= $1", through)
        removed = int(status.split()[-1])
        await conn.execute("SELECT set_config('flode.audit_prune', 'off', true)")
        await conn.execute(
            "INSERT INTO audit_anchor (chain_pos, hash, before, removed) VALUES ($1, $2, $3, $4)",
            through,
            last["hash"],
            before,
            removed,
        )
    detail = (
        f"Removed {removed} entries recorded before {format_instant(before)} "
        f"(chain positions up to {through})"
    )
    await append(conn, ctx, [Access("log-prune", "D", None, detail=detail)])
    return Pruned(before, removed, through)
