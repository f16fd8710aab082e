"""`flode audit verify|search|extract|prune` as an operator runs them: real processes, on a
database of the test's own (flode.audit.cli, flode.audit.commands)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from flode.audit import Access, append
from flode.audit.seal import seal_all

from .conftest import clinician, new_id

FLODE = [sys.executable, "-m", "flode"]


def flode(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(
        [*FLODE, "audit", *args], capture_output=True, text=True, timeout=120, env=env
    )


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(flode, *args)


async def test_verify_reports_an_intact_chain_and_exits_0(
    own: asyncpg.Connection, own_url: str
) -> None:
    await append(own, clinician(), [Access("read", "R", new_id()) for _ in range(3)])
    result = await run("verify", "--database-url", own_url)
    assert result.returncode == 0, result.stderr
    assert "unsealed entries" in result.stderr
    assert "3" in result.stderr
    sealed = await run("verify", "--seal", "--database-url", own_url)
    assert sealed.returncode == 0, sealed.stderr
    assert "Sealed 3 entries" in sealed.stderr
    assert "The chain is intact" in sealed.stderr
    assert await own.fetchval("SELECT count(*) FROM audit_event WHERE chain_pos IS NULL") == 0


async def test_verify_reports_a_changed_entry_and_exits_1(
    own: asyncpg.Connection, own_url: str
) -> None:
    await append(own, clinician(), [Access("read", "R", new_id()) for _ in range(3)])
    await seal_all(own)
    await own.execute("ALTER TABLE audit_event DISABLE TRIGGER USER")
    await own.execute("UPDATE audit_event SET outcome = '4' WHERE chain_pos = 2")
    await own.execute("ALTER TABLE audit_event ENABLE TRIGGER USER")
    result = await run("verify", "--database-url", own_url)
    assert result.returncode == 1, result.stderr
    assert "changed" in result.stderr
    assert "broken in 1 place" in result.stderr


async def test_verify_without_a_database_exits_2(tmp_path: Path) -> None:
    result = await run("verify", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert "Cannot connect" in result.stderr


async def test_search_lists_entries_and_is_logged_as_a_review(
    own: asyncpg.Connection, own_url: str
) -> None:
    patient = new_id()
    ctx = clinician(purpose_of_use="ETREAT", emergency_reason="Akut")
    await append(own, ctx, [Access("read", "R", patient), Access("read", "R", new_id())])
    as_json = await run(
        "search", "--patient", patient, "--format", "json", "--reviewer", "SE-REVIEWER",
        "--database-url", own_url,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    (found,) = json.loads(as_json.stdout)
    assert found["entity"][0]["what"]["reference"] == f"Patient/{patient}"
    table = await run(
        "search", "--flag", "emergency", "--since", "2020-01-01", "--database-url", own_url
    )
    assert table.returncode == 0, table.stderr
    assert patient in table.stdout
    assert "2 entries" in table.stderr
    review = await own.fetchrow(
        "SELECT * FROM audit_event WHERE interaction = 'log-review' ORDER BY seq LIMIT 1"
    )
    assert review is not None
    assert (review["patient_id"], review["agent_hsa_id"]) == (patient, "SE-REVIEWER")
    assert review["client_id"] == "flode-operator"
    bad = await run("search", "--since", "last week", "--database-url", own_url)
    assert bad.returncode == 2
    assert "last week" in bad.stderr


async def test_extract_writes_html_pdf_and_json(
    own: asyncpg.Connection, own_url: str, tmp_path: Path
) -> None:
    patient = new_id()
    await append(own, clinician(), [Access("read", "R", patient)])
    for fmt, check in (
        ("html", lambda data: b"Logguttag" in data),
        ("pdf", lambda data: data.startswith(b"%PDF-")),
        # the read, and the two extracts before this one
        ("json", lambda data: json.loads(data)["total"] == 3),
    ):
        output = tmp_path / f"extract.{fmt}"
        result = await run(
            "extract", "--patient", patient, "--format", fmt, "-o", str(output),
            "--database-url", own_url,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert check(output.read_bytes()), fmt
    extracts = await own.fetchval(
        "SELECT count(*) FROM audit_event WHERE interaction = 'log-extract' AND patient_id = $1",
        patient,
    )
    assert extracts == 3


async def test_prune_refuses_a_retention_under_five_years_without_force(
    own: asyncpg.Connection, own_url: str
) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    await append(own, clinician(), [Access("read", "R", new_id())], at=old)
    await seal_all(own)
    refused = await run("prune", "--retention-days", "365", "--database-url", own_url)
    assert refused.returncode == 2
    assert "five years" in refused.stderr
    assert await own.fetchval("SELECT count(*) FROM audit_event") == 1
    kept = await run("prune", "--database-url", own_url)
    assert kept.returncode == 0, kept.stderr
    assert "No entries" in kept.stderr
    forced = await run("prune", "--retention-days", "365", "--force", "--database-url", own_url)
    assert forced.returncode == 0, forced.stderr
    assert "Removed 1 entries" in forced.stderr
    rows = await own.fetch("SELECT interaction FROM audit_event ORDER BY seq")
    assert [row[0] for row in rows] == ["log-prune"]
    verified = await run("verify", "--seal", "--database-url", own_url)
    assert verified.returncode == 0, verified.stderr
