"""Sealing and the append-only table: the chain the sealer builds, the sealer running in the
server, and the trigger that refuses every change but the seal (flode.audit.seal, migration
0013)."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg
import pytest

from flode.audit import Access, append
from flode.audit.seal import GENESIS, canonical, seal, seal_all

from .conftest import clinician, new_id


async def test_sealing_chains_the_entries_in_the_order_they_were_written(
    own: asyncpg.Connection,
) -> None:
    await append(own, clinician(), [Access("read", "R", new_id()) for _ in range(3)])
    await append(own, clinician(), [Access("update", "U", new_id())])
    assert await seal_all(own) == 4
    rows = await own.fetch("SELECT * FROM audit_event ORDER BY seq")
    assert [row["chain_pos"] for row in rows] == [1, 2, 3, 4]
    previous = GENESIS
    for row in rows:
        assert row["prev_hash"] == previous
        assert row["hash"] == hashlib.sha256(previous + canonical(row, row["chain_pos"])).digest()
        previous = row["hash"]
    await append(own, clinician(), [Access("delete", "D", new_id())])
    assert await seal_all(own) == 1
    last = await own.fetchrow("SELECT * FROM audit_event ORDER BY seq DESC LIMIT 1")
    assert last is not None
    assert (last["chain_pos"], last["prev_hash"]) == (5, previous)
    assert await seal_all(own) == 0


async def test_one_sealer_at_a_time_seals_a_round(own_url: str) -> None:
    conns = [await asyncpg.connect(own_url) for _ in range(2)]
    first, second = conns
    try:
        await append(first, clinician(), [Access("read", "R", new_id()) for _ in range(5)])
        async with first.transaction():
            await first.execute("SELECT pg_advisory_xact_lock(x'464C4F44454155'::bigint)")
            assert await seal(second) == 0  # another node is sealing: this one skips
        assert await seal(second, limit=2) == 2
        assert await seal_all(first) == 3
        positions = await first.fetch("SELECT chain_pos FROM audit_event ORDER BY chain_pos")
        assert [row[0] for row in positions] == [1, 2, 3, 4, 5]
    finally:
        for conn in conns:
            await conn.close()


async def test_the_server_seals_new_entries_within_seconds(pool: asyncpg.Pool) -> None:
    ctx = clinician()
    await append(pool, ctx, [Access("read", "R", new_id())])
    for _ in range(100):
        sealed = await pool.fetchval(
            "SELECT chain_pos IS NOT NULL FROM audit_event WHERE content LIKE $1",
            f"%{ctx.request_id}%",
        )
        if sealed:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the entry was not sealed within ten seconds")


async def test_an_update_of_an_entry_is_refused(own: asyncpg.Connection) -> None:
    await append(own, clinician(), [Access("read", "R", "p1")])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("UPDATE audit_event SET patient_id = 'p2'")
    await seal_all(own)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("UPDATE audit_event SET content = replace(content, 'p1', 'p2')")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("UPDATE audit_event SET chain_pos = 7, hash = '\\x00'::bytea")
    assert await own.fetchval("SELECT patient_id FROM audit_event") == "p1"


async def test_a_seal_is_given_once_and_only_with_nothing_else_changed(
    own: asyncpg.Connection,
) -> None:
    await append(own, clinician(), [Access("read", "R", "p1")])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute(
            "UPDATE audit_event SET chain_pos = 1, hash = '\\x01', prev_hash = '\\x00', "
            "outcome = '4'"
        )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("UPDATE audit_event SET chain_pos = 1")  # not all three at once


async def test_an_entry_cannot_be_written_sealed(own: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.RaiseError, match="sealed by Flöde"):
        await own.execute(
            """INSERT INTO audit_event (id, recorded, interaction, action, outcome, content,
                                        chain_pos, hash, prev_hash)
               VALUES ('x', now(), 'read', 'R', '0', '{}', 1, '\\x01', '\\x00')"""
        )


async def test_a_delete_or_truncate_is_refused(own: asyncpg.Connection) -> None:
    await append(own, clinician(), [Access("read", "R", "p1")])
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("DELETE FROM audit_event")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("TRUNCATE audit_event")
    async with own.transaction():  # only for the prune's own transaction
        await own.execute("SELECT set_config('flode.audit_prune', 'off', true)")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await own.execute("DELETE FROM audit_event")
    assert await own.fetchval("SELECT count(*) FROM audit_event") == 1


async def test_the_prune_anchors_cannot_be_changed(own: asyncpg.Connection) -> None:
    await own.execute(
        "INSERT INTO audit_anchor (chain_pos, hash, before, removed) VALUES (1, '\\x00', now(), 1)"
    )
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("UPDATE audit_anchor SET removed = 0")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("DELETE FROM audit_anchor")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await own.execute("TRUNCATE audit_anchor")
