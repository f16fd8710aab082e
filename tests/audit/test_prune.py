"""Retention: prune removes the beginning of the chain up to the first entry within the
retention, leaves an anchor verification starts from, and logs itself (flode.audit.prune)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from flode.audit import Access, append
from flode.audit.prune import prune, too_short
from flode.audit.seal import seal_all
from flode.audit.verify import verify
from flode.context import RequestContext

from .conftest import clinician, new_id

NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)
RETENTION = 5 * 366


def _years_ago(years: float) -> datetime:
    return NOW - timedelta(days=365.25 * years)


async def _entries(conn: asyncpg.Connection, at: datetime, count: int) -> None:
    await append(conn, clinician(), [Access("read", "R", new_id()) for _ in range(count)], at=at)
    await seal_all(conn)


async def test_prune_removes_the_entries_older_than_the_retention(
    own: asyncpg.Connection,
) -> None:
    await _entries(own, _years_ago(7), 2)
    await _entries(own, _years_ago(6), 3)
    await _entries(own, _years_ago(1), 2)
    pruned = await prune(own, RequestContext.system("prune"), RETENTION, now=NOW)
    assert (pruned.removed, pruned.through) == (5, 5)
    positions = await own.fetch("SELECT chain_pos FROM audit_event ORDER BY seq")
    assert [row[0] for row in positions] == [6, 7, None]  # the prune's own entry, unsealed
    logged = await own.fetchrow("SELECT * FROM audit_event WHERE interaction = 'log-prune'")
    assert logged is not None
    assert logged["action"] == "D"
    assert "Removed 5 entries" in logged["content"]
    anchor = await own.fetchrow("SELECT * FROM audit_anchor")
    assert anchor is not None
    assert (anchor["chain_pos"], anchor["removed"]) == (5, 5)
    report = await verify(own)
    assert report.intact
    assert (report.first, report.sealed, report.unsealed) == (6, 2, 1)


async def test_the_chain_goes_on_after_a_prune(own: asyncpg.Connection) -> None:
    await _entries(own, _years_ago(6), 2)
    await prune(own, RequestContext.system("prune"), RETENTION, now=NOW)
    await _entries(own, NOW, 1)
    positions = await own.fetch("SELECT chain_pos FROM audit_event ORDER BY chain_pos")
    assert [row[0] for row in positions] == [3, 4]  # the prune's entry, then the new one
    assert (await verify(own)).intact


async def test_prune_keeps_an_old_entry_sealed_after_a_newer_one(
    own: asyncpg.Connection,
) -> None:
    await _entries(own, _years_ago(6), 1)
    await _entries(own, _years_ago(1), 1)
    await _entries(own, _years_ago(6), 1)  # late: it stays until the one before it goes
    pruned = await prune(own, RequestContext.system("prune"), RETENTION, now=NOW)
    assert pruned.removed == 1
    assert await own.fetchval("SELECT count(*) FROM audit_event WHERE chain_pos IS NOT NULL") == 2
    assert (await verify(own)).intact


async def test_prune_with_nothing_old_removes_nothing(own: asyncpg.Connection) -> None:
    await _entries(own, _years_ago(1), 2)
    pruned = await prune(own, RequestContext.system("prune"), RETENTION, now=NOW)
    assert (pruned.removed, pruned.through) == (0, None)
    assert await own.fetchval("SELECT count(*) FROM audit_anchor") == 0


async def test_entries_removed_before_the_anchor_behind_its_back_are_detected(
    own: asyncpg.Connection,
) -> None:
    await _entries(own, _years_ago(6), 2)
    await _entries(own, _years_ago(1), 3)
    await prune(own, RequestContext.system("prune"), RETENTION, now=NOW)
    await own.execute("ALTER TABLE audit_event DISABLE TRIGGER USER")
    await own.execute("DELETE FROM audit_event WHERE chain_pos = 3")
    await own.execute("ALTER TABLE audit_event ENABLE TRIGGER USER")
    report = await verify(own)
    assert [(b.chain_pos, b.kind) for b in report.breaks] == [(4, "missing")]


def test_a_retention_under_five_years_is_too_short() -> None:
    assert not too_short(5 * 366, NOW)
    assert not too_short(1827, NOW)
    assert too_short(5 * 365, NOW)
    assert too_short(30, NOW)
    leap = datetime(2032, 2, 29, tzinfo=UTC)
    assert not too_short(5 * 366, leap)
