"""Import jobs survive their server: a job left running goes on after the last line it saved, a
stopped server leaves its job for the next, a job runs in one process at a time, and an input
whose file changed meanwhile is not resumed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from flode.bulk.background import requested_by
from flode.bulk.import_jobs import Importer, Settings
from flode.bulk.import_request import ImportRequest, Input
from flode.bulk.import_store import ImportJob
from flode.context import RequestContext

from .conftest import client_of, create_database, export_config, running
from .importing import Files, file_server, ndjson

BASICS = 10


@pytest.fixture(scope="module")
async def database(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    """A migrated database (a server started on it once) and a pool on it."""
    url = await create_database(database_url, "import_jobs")
    with running(export_config(tmp_path_factory.mktemp("import-jobs")), url) as served:
        async with client_of(served) as client:
            assert (await client.get("metadata")).status_code == 200
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    assert pool is not None
    yield url, pool
    await asyncio.wait_for(pool.close(), 30)


@pytest.fixture
def files() -> Iterator[Files]:
    with file_server() as found:
        yield found


def importer(database: tuple[str, asyncpg.Pool], directory: Path) -> Importer:
    url, pool = database
    settings = Settings(
        database_url=url,
        data_dir=directory / "data",
        work_dir=directory / "import",
        import_dir=None,
        allowed_hosts=("127.0.0.0/8",),
        max_bytes=1024 * 1024,
        max_line_bytes=1024 * 1024,
        json_logs=True,
    )
    return Importer(pool, settings, expiry=timedelta(hours=1), poll_seconds=0.05)


def basics(tag: str) -> bytes:
    return ndjson(
        [
            {"resourceType": "Basic", "id": f"{tag}{n:02}", "code": {"text": f"nr {n}"}}
            for n in range(BASICS)
        ]
    )


async def submit(runner: Importer, asked: ImportRequest) -> ImportJob:
    who = requested_by(RequestContext.system("test"))
    return await runner.submit(asked, request="test", requested_by=who, bearer=None)


async def started_until_done(runner: Importer, job: ImportJob) -> ImportJob:
    """Run the importer until the job is done; the job then (completed, else it fails)."""
    await runner.start()
    try:
        done = await finished(runner, job)
    finally:
        await runner.close()
    assert done.status == "completed", done.error
    return done


async def finished(runner: Importer, job: ImportJob) -> ImportJob:
    await asyncio.wait_for(runner.wait(job.id), 60)
    found = await runner.status(job.id)
    assert found is not None
    return found


async def existing(pool: asyncpg.Pool, tag: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT id FROM resource WHERE resource_type = 'Basic' AND id LIKE $1 ORDER BY id",
        f"{tag}%",
    )
    return [row["id"] for row in rows]


async def test_a_job_left_running_goes_on_after_the_last_line_it_saved(
    database: tuple[str, asyncpg.Pool], files: Files, tmp_path: Path
) -> None:
    _, pool = database
    content = basics("resume")
    url = files.add("resume.ndjson", content)
    runner = importer(database, tmp_path)
    job = await submit(runner, ImportRequest((Input("Basic", url),)))
    # What a server that stopped after saving four lines of the file leaves behind.
    await pool.execute("UPDATE import_job SET status = 'running' WHERE id = $1", job.id)
    await pool.execute(
        """UPDATE import_input SET line = 4, loaded = 4, bytes = $2, sha256 = $3
           WHERE job_id = $1""",
        job.id,
        len(content),
        hashlib.sha256(content).hexdigest(),
    )
    done = await started_until_done(runner, job)
    assert [(i.status, i.line, i.loaded, i.errors) for i in done.inputs] == [
        ("loaded", BASICS, BASICS, 0)
    ]
    # Lines 5 to 10 were written now; the first four were not written again.
    assert await existing(pool, "resume") == [f"resume{n:02}" for n in range(4, BASICS)]


async def test_an_input_whose_file_changed_since_it_was_begun_is_not_resumed(
    database: tuple[str, asyncpg.Pool], files: Files, tmp_path: Path
) -> None:
    _, pool = database
    url = files.add("changed.ndjson", basics("changed"))
    runner = importer(database, tmp_path)
    job = await submit(runner, ImportRequest((Input("Basic", url),)))
    await pool.execute("UPDATE import_job SET status = 'running' WHERE id = $1", job.id)
    await pool.execute(
        "UPDATE import_input SET line = 4, loaded = 4, bytes = 1, sha256 = 'x' WHERE job_id = $1",
        job.id,
    )
    done = await started_until_done(runner, job)
    assert [(i.status, i.errors) for i in done.inputs] == [("failed", 1)]
    (line,) = await runner.errors(job.id, 1)
    assert "has changed since the import began reading it" in line
    assert await existing(pool, "changed") == []


async def test_a_stopped_server_leaves_its_job_running_for_the_next(
    database: tuple[str, asyncpg.Pool], files: Files, tmp_path: Path
) -> None:
    _, pool = database
    url = files.add("restart.ndjson", basics("restart"))
    release = files.hold("restart.ndjson")
    runner = importer(database, tmp_path)
    job = await submit(runner, ImportRequest((Input("Basic", url),)))
    await runner.start()
    for _ in range(400):  # until its process is fetching the file
        if any(a[1].endswith("restart.ndjson") for a in files.asked):
            break
        await asyncio.sleep(0.05)
    await runner.close()
    stopped = await runner.status(job.id)
    assert stopped is not None
    assert stopped.status == "running"
    release.set()
    again = importer(database, tmp_path)
    await again.start()
    try:
        done = await finished(again, job)
    finally:
        await again.close()
    assert done.status == "completed"
    assert done.inputs[0].loaded == BASICS
    assert len(await existing(pool, "restart")) == BASICS


async def test_a_job_runs_in_one_process_at_a_time(
    database: tuple[str, asyncpg.Pool], files: Files, tmp_path: Path
) -> None:
    _, pool = database
    url = files.add("once.ndjson", basics("once"))
    first, second = importer(database, tmp_path), importer(database, tmp_path)
    job = await submit(first, ImportRequest((Input("Basic", url),)))
    try:
        async with pool.acquire() as holder:
            # Another process runs the job: neither of these may touch it.
            key = f"flode:import:{job.id}"
            locked = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
            assert await holder.fetchval(locked, key)
            await first.start()
            await second.start()
            await asyncio.sleep(0.5)
            status = await first.status(job.id)
            assert status is not None
            assert status.status == "accepted"
            await holder.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
        done = await finished(first, job)
    finally:
        await first.close()
        await second.close()
    assert done.status == "completed"
    assert len(await existing(pool, "once")) == BASICS
    assert len([a for a in files.asked if a[1].endswith("once.ndjson")]) == 1


async def test_a_pull_resumed_after_a_restart_polls_the_export_it_started(
    database: tuple[str, asyncpg.Pool], files: Files, tmp_path: Path
) -> None:
    _, pool = database
    files.add("Patient-pull.ndjson", ndjson([{"resourceType": "Patient", "id": "pulled"}]))
    runner = importer(database, tmp_path)
    job = await submit(runner, ImportRequest(export_url=f"{files.base}/export"))
    # Kicked off before the restart: the status URL was saved.
    await pool.execute(
        "UPDATE import_job SET status = 'running', export_status_url = $2 WHERE id = $1",
        job.id,
        f"{files.base}/status",
    )
    done = await started_until_done(runner, job)
    assert [(i.type, i.loaded) for i in done.inputs] == [("Patient", 1)]
    assert not [a for a in files.asked if a[1] == "/export"]
