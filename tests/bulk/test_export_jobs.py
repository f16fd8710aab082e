"""Export jobs survive their process: a job left running resumes after the last batch it saved
(its files cut back to what was saved), a job that cannot resume is marked failed, and a job
runs in one process at a time. The state exported is the one at the transaction time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from e2e.synthea import read_json
from flode.bulk.jobs import Exporter, ExportJob, context_of, requested_by
from flode.bulk.ndjson import NdjsonFiles
from flode.bulk.run import Cursor, run
from flode.bulk.selection import Selection, batch
from flode.context import RequestContext
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.search import SearchCompiler

from .conftest import client_of, create_database, export_config, running

# Organizations: the server writes none of them itself (its SubscriptionTopics are Basic).
ORGANIZATIONS = 30


@pytest.fixture(scope="module")
async def pool(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[asyncpg.Pool]:
    """A database with 30 Organizations, written by a server that has stopped since."""
    url = await create_database(database_url, "export_jobs")
    with running(export_config(tmp_path_factory.mktemp("export-jobs")), url) as served:
        async with client_of(served) as client:
            for n in range(ORGANIZATIONS):
                body = {"resourceType": "Organization", "id": f"b{n:02}", "name": f"nr {n}"}
                assert (await client.put(f"Organization/b{n:02}", json=body)).status_code == 201
    found = await asyncpg.create_pool(url, min_size=1, max_size=6)
    assert found is not None
    yield found
    await found.close()


def exporter(pool: asyncpg.Pool, directory: Path, batch: int = 5) -> Exporter:
    definitions = Definitions.load()
    compiler = SearchCompiler(SearchParameters.load(definitions), definitions.resource_types)
    return Exporter(
        pool,
        compiler,
        directory,
        max_file_bytes=1024 * 1024,
        expiry=timedelta(hours=1),
        batch=batch,
        poll_seconds=0.05,
    )


async def submit(runner: Exporter) -> ExportJob:
    selection = Selection("system", ("Organization",), datetime.now(UTC))
    who = requested_by(RequestContext.system("test"))
    return await runner.submit(selection, request="test", requested_by=who)


def ids_in(path: Path) -> list[str]:
    return [read_json(line)["id"] for line in path.read_text().splitlines()]


async def finished(runner: Exporter, job: ExportJob) -> ExportJob:
    await asyncio.wait_for(runner.wait(job.id), 30)
    found = await runner.status(job.id)
    assert found is not None
    return found


async def test_a_job_left_running_resumes_after_its_last_saved_batch(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    runner = exporter(pool, tmp_path)
    job = await submit(runner)
    # What a process that stopped after writing two batches, but saving one, leaves behind.
    await pool.execute(
        "UPDATE export_job SET status = 'running', total = $2 WHERE id = $1", job.id, ORGANIZATIONS
    )
    files = NdjsonFiles(runner.job_directory(job.id), 1024 * 1024)
    files.restore()
    async with pool.acquire() as conn:
        steps = run(conn, job.selection, files, Cursor(), batch=5)
        first = await anext(steps)
        saved = first.touched[0]
        name, count, size = saved.name, saved.count, saved.bytes
        await anext(steps)
        await steps.aclose()
    await pool.execute(
        """UPDATE export_job SET cursor_type = $2, cursor_id = $3, done = $4 WHERE id = $1""",
        job.id,
        first.cursor.type_index,
        first.cursor.after,
        first.cursor.done,
    )
    await pool.execute(
        """INSERT INTO export_file (job_id, name, kind, type, seq, count, bytes)
           VALUES ($1, $2, 'output', 'Organization', 1, $3, $4)""",
        job.id,
        name,
        count,
        size,
    )
    path = runner.job_directory(job.id) / name
    assert len(ids_in(path)) == 10
    (runner.job_directory(job.id) / "Organization-2.ndjson").write_text("left over\n")
    await runner.start()
    try:
        done = await finished(runner, job)
    finally:
        await runner.close()
    assert done.status == "completed"
    assert done.done == ORGANIZATIONS
    assert ids_in(path) == [f"b{n:02}" for n in range(ORGANIZATIONS)]
    assert [f.name for f in done.files] == [name]
    assert not (runner.job_directory(job.id) / "Organization-2.ndjson").exists()


async def test_a_job_whose_files_are_lost_is_marked_failed(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    runner = exporter(pool, tmp_path)
    job = await submit(runner)
    await pool.execute(
        """UPDATE export_job SET status = 'running', total = 30, cursor_id = 'b04', done = 5
           WHERE id = $1""",
        job.id,
    )
    await pool.execute(
        """INSERT INTO export_file (job_id, name, kind, type, seq, count, bytes)
           VALUES ($1, 'Organization-1.ndjson', 'output', 'Organization', 1, 5, 400)""",
        job.id,
    )
    await runner.start()
    try:
        done = await finished(runner, job)
    finally:
        await runner.close()
    assert done.status == "failed"
    assert done.error is not None
    assert "shorter than recorded" in done.error


async def test_a_job_runs_in_one_process_at_a_time(pool: asyncpg.Pool, tmp_path: Path) -> None:
    first, second = exporter(pool, tmp_path), exporter(pool, tmp_path)
    job = await submit(first)
    key = f"flode:export:{job.id}"
    async with pool.acquire() as holder:
        # Another process runs the job: neither of these may touch it.
        assert await holder.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key)
        await first.start()
        await second.start()
        await asyncio.sleep(0.5)
        status = await first.status(job.id)
        assert status is not None
        assert status.status == "accepted"
        await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
    try:
        done = await finished(first, job)
    finally:
        await first.close()
        await second.close()
    assert done.status == "completed"
    lines = [id for f in done.files for id in ids_in(first.job_directory(job.id) / f.name)]
    assert lines == [f"b{n:02}" for n in range(ORGANIZATIONS)]


async def test_a_stopped_server_leaves_its_job_running_for_the_next(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    runner = exporter(pool, tmp_path, batch=1)
    job = await submit(runner)
    await runner.start()
    for _ in range(200):
        status = await runner.status(job.id)
        assert status is not None
        if status.done > 0:
            break
        await asyncio.sleep(0.01)
    await runner.close()
    stopped = await runner.status(job.id)
    assert stopped is not None
    assert stopped.status in ("running", "completed")
    again = exporter(pool, tmp_path)
    await again.start()
    try:
        done = await finished(again, job)
    finally:
        await again.close()
    assert done.status == "completed"
    lines = [id for f in done.files for id in ids_in(again.job_directory(job.id) / f.name)]
    assert lines == [f"b{n:02}" for n in range(ORGANIZATIONS)]


async def test_the_export_holds_each_resource_as_it_was_at_the_transaction_time(
    tmp_path: Path, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    url = await create_database(database_url, "export_time")
    with running(export_config(tmp_path), url) as served:
        async with client_of(served) as client:
            for name in ("changed", "deleted"):
                body = {"resourceType": "Organization", "id": f"{name}-{tag}", "name": "före"}
                assert (
                    await client.put(f"Organization/{name}-{tag}", json=body)
                ).status_code == 201
            at = datetime.now(UTC)
            body = {"resourceType": "Organization", "id": f"changed-{tag}", "name": "efter"}
            assert (await client.put(f"Organization/changed-{tag}", json=body)).status_code == 200
            assert (await client.delete(f"Organization/deleted-{tag}")).status_code == 204
            body = {"resourceType": "Organization", "id": f"new-{tag}", "name": "ny"}
            assert (await client.put(f"Organization/new-{tag}", json=body)).status_code == 201
    conn = await asyncpg.connect(url)
    try:
        selection = Selection("system", ("Organization",), at)
        rows = await batch(conn, selection, "Organization", "", 100)
    finally:
        await conn.close()
    found = {id: read_json(content) for id, content in rows}
    assert set(found) == {f"changed-{tag}", f"deleted-{tag}"}
    assert found[f"changed-{tag}"]["name"] == "före"
    assert found[f"changed-{tag}"]["meta"]["versionId"] == "1"


def test_a_job_keeps_the_context_of_its_kick_off() -> None:
    ctx = RequestContext(
        request_id="r1",
        base_url="http://x/fhir",
        client_id="analytics",
        scopes=frozenset({"system/Patient.rs"}),
        patient="p1",
    )
    assert context_of(requested_by(ctx)) == ctx
    # What an older or newer version saved still gives a context, never a trusted one.
    restored = context_of({"client_id": "analytics", "no_such_field": 1})
    assert restored.client_id == "analytics"
    assert not restored.trusted
    assert restored.scopes == frozenset()
