"""`flode audit sample|result|results` as an operator runs them: real processes, on a database
of the test's own (flode.audit.cli, flode.audit.commands)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import asyncpg

from flode.audit import Access, append

from .conftest import clinician, new_id
from .test_cli import run

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
MARCH = ("--from", "2026-03-01", "--to", "2026-03-31")


async def test_sample_lists_the_flagged_and_the_drawn_entries_and_draws_them_again(
    own: asyncpg.Connection, own_url: str
) -> None:
    urgent = clinician(purpose_of_use="ETREAT", emergency_reason="Akut")
    await append(own, urgent, [Access("read", "R", new_id())], at=T0)
    for user in ("SE2321000131-P0000000001", "SE2321000131-P0000000002"):
        ctx = clinician(user_hsa_id=user)
        await append(own, ctx, [Access("read", "R", new_id()) for _ in range(3)], at=T0)
    asked = ("sample", *MARCH, "--size", "3", "--seed", "v1", "--database-url", own_url)
    first = await run(*asked, "--format", "json")
    assert first.returncode == 0, first.stderr
    bundle = json.loads(first.stdout)
    drawn = [e["resource"]["id"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(drawn) == 4
    again = json.loads((await run(*asked, "--format", "json")).stdout)
    assert [e["resource"]["id"] for e in again["entry"][:-1]] == drawn
    table = await run(*asked, "--reviewer", "SE2321000131-P0000000009")
    assert table.returncode == 0, table.stderr
    assert "systematic emergency" in table.stdout
    assert "random 1" in table.stdout
    assert "--seed v1" in table.stderr
    reviews = await own.fetch(
        "SELECT agent_hsa_id FROM audit_event WHERE interaction = 'log-review' ORDER BY seq"
    )
    assert [row[0] for row in reviews] == [None, None, "SE2321000131-P0000000009"]
    bad = await run("sample", "--from", "yesterday", "--to", "2026-03-31", "--size", "3")
    assert bad.returncode == 2
    assert "yesterday" in bad.stderr


async def test_result_records_a_conclusion_that_results_lists(
    own: asyncpg.Connection, own_url: str
) -> None:
    patient = new_id()
    await append(own, clinician(), [Access("read", "R", patient)], at=T0)
    entry = await own.fetchval("SELECT id FROM audit_event WHERE patient_id = $1", patient)
    reviewer = "SE2321000131-P0000000009"
    recorded = await run(
        "result", "--entry", entry, "--outcome", "follow-up", "--comment", "Fråga chefen",
        "--reviewer", reviewer, "--care-unit", "SE2321000131-E0000000009",
        "--database-url", own_url,
    )  # fmt: skip
    assert recorded.returncode == 0, recorded.stderr
    assert "Recorded the review result" in recorded.stderr
    listed = await run("results", "--by", reviewer, "--format", "json", "--database-url", own_url)
    assert listed.returncode == 0, listed.stderr
    (basic,) = json.loads(listed.stdout)
    assert basic["resourceType"] == "Basic"
    assert basic["author"]["identifier"]["value"] == reviewer
    table = await run("results", "--entry", entry, "--outcome", "follow-up",
                      "--database-url", own_url)  # fmt: skip
    assert table.returncode == 0, table.stderr
    assert "Fråga chefen" in table.stdout
    assert "1 results" in table.stderr
    logged = await own.fetchrow("SELECT * FROM audit_event WHERE interaction = 'log-review-result'")
    assert logged is not None
    assert (logged["patient_id"], logged["agent_hsa_id"]) == (patient, reviewer)
    assert logged["client_id"] == "flode-operator"
    refused = await run(
        "result", "--entry", new_id(), "--outcome", "no-remark", "--reviewer", reviewer,
        "--database-url", own_url,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "not in the log" in refused.stderr
    assert await own.fetchval("SELECT count(*) FROM audit_review_result") == 1
