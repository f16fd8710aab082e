"""Verifying the chain finds what was changed or removed behind Flöde's back: each test
tampers with its own database for real, with the table's trigger switched off as the
database superuser can (flode.audit.verify)."""

from __future__ import annotations

import asyncpg

from flode.audit import Access, append
from flode.audit.seal import digest, seal_all
from flode.audit.verify import verify

from .conftest import clinician, new_id


async def _log(conn: asyncpg.Connection, count: int) -> list[asyncpg.Record]:
    await append(conn, clinician(), [Access("read", "R", new_id()) for _ in range(count)])
    await seal_all(conn)
    return list(await conn.fetch("SELECT * FROM audit_event ORDER BY chain_pos"))


async def _tamper(conn: asyncpg.Connection, sql: str, *args: object) -> None:
    await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER USER")
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER USER")


async def test_an_intact_chain_verifies(own: asyncpg.Connection) -> None:
    rows = await _log(own, 5)
    await append(own, clinician(), [Access("read", "R", new_id())])  # not sealed yet
    seen: list[int] = []
    report = await verify(own, seen.append)
    assert report.intact
    assert (report.sealed, report.unsealed) == (5, 1)
    assert (report.first, report.last, report.head) == (1, 5, rows[-1]["hash"])
    assert seen[-1] == 5


async def test_an_empty_log_verifies(own: asyncpg.Connection) -> None:
    report = await verify(own)
    assert report.intact
    assert (report.sealed, report.unsealed, report.first) == (0, 0, None)


async def test_an_updated_entry_is_detected_by_verify(own: asyncpg.Connection) -> None:
    rows = await _log(own, 5)
    changed = rows[2]
    await _tamper(
        own,
        "UPDATE audit_event SET content = replace(content, patient_id, 'someone-else'), "
        "patient_id = 'someone-else' WHERE id = $1",
        changed["id"],
    )
    report = await verify(own)
    assert [(b.chain_pos, b.id, b.kind) for b in report.breaks] == [(3, changed["id"], "changed")]


async def test_a_change_of_any_field_is_detected_by_verify(own: asyncpg.Connection) -> None:
    rows = await _log(own, 3)
    await _tamper(own, "UPDATE audit_event SET care_unit = 'SE-other' WHERE id = $1", rows[0]["id"])
    await _tamper(own, "UPDATE audit_event SET flags = '{x}' WHERE id = $1", rows[2]["id"])
    report = await verify(own)
    assert [(b.chain_pos, b.kind) for b in report.breaks] == [(1, "changed"), (3, "changed")]


async def test_an_entry_with_its_hash_made_again_is_detected_by_the_next(
    own: asyncpg.Connection,
) -> None:
    rows = await _log(own, 4)
    forged = dict(rows[1])
    forged["outcome"] = "4"
    new_hash = digest(forged["prev_hash"], forged, forged["chain_pos"])
    await _tamper(
        own,
        "UPDATE audit_event SET outcome = '4', hash = $2 WHERE id = $1",
        rows[1]["id"],
        new_hash,
    )
    report = await verify(own)
    assert [(b.chain_pos, b.kind) for b in report.breaks] == [(3, "relinked")]


async def test_a_deleted_entry_is_detected_by_verify(own: asyncpg.Connection) -> None:
    rows = await _log(own, 6)
    await _tamper(own, "DELETE FROM audit_event WHERE chain_pos IN (3, 4)")
    report = await verify(own)
    assert [(b.chain_pos, b.id, b.kind) for b in report.breaks] == [(5, rows[4]["id"], "missing")]
    assert "3–4" in report.breaks[0].text
    assert report.sealed == 4


async def test_deleted_first_entries_are_detected_by_verify(own: asyncpg.Connection) -> None:
    await _log(own, 3)
    await _tamper(own, "DELETE FROM audit_event WHERE chain_pos = 1")
    report = await verify(own)
    assert [(b.chain_pos, b.kind) for b in report.breaks] == [(2, "missing")]


async def test_entries_moved_in_the_chain_are_detected_by_verify(own: asyncpg.Connection) -> None:
    await _log(own, 3)
    await _tamper(
        own,
        "UPDATE audit_event SET chain_pos = -1 WHERE chain_pos = 1; "
        "UPDATE audit_event SET chain_pos = 1 WHERE chain_pos = 2; "
        "UPDATE audit_event SET chain_pos = 2 WHERE chain_pos = -1",
    )
    report = await verify(own)
    kinds = {(b.chain_pos, b.kind) for b in report.breaks}
    assert (1, "relinked") in kinds
    assert (1, "changed") in kinds
    assert not report.intact
