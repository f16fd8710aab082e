"""The rows of `$import` jobs (migration 0015): a job, its input files and the errors of their
lines, read and saved by the server (kick-off, status, cancel) and by the process that runs a
job (flode.bulk.import_run)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from flode.bulk import background
from flode.bulk.background import Conn
from flode.bulk.import_request import ImportRequest, Input

TABLE = "import_job"
DONE = ("loaded", "failed")
"""The states of an input that is finished with."""

Executor = Conn | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class ImportInput:
    seq: int
    type: str
    url: str
    status: str
    """pending, deferred (waits for other inputs), loaded or failed"""
    bytes: int | None
    sha256: str | None
    line: int
    """The last line handled."""
    loaded: int
    errors: int


@dataclass(frozen=True, slots=True)
class ImportJob:
    id: uuid.UUID
    status: str
    """accepted, running, completed, failed, cancelled or expired"""
    request: str
    input_source: str | None
    export_url: str | None
    export_type: str | None
    export_parameters: list[dict[str, Any]]
    export_status_url: str | None
    requested_by: dict[str, Any]
    bearer: str | None
    error: str | None
    created: datetime
    started: datetime | None
    finished: datetime | None
    expires: datetime | None
    inputs: list[ImportInput] = field(default_factory=list)


async def load(conn: Executor, id: uuid.UUID) -> ImportJob | None:
    row = await conn.fetchrow("SELECT * FROM import_job WHERE id = $1", id)
    if row is None:
        return None
    inputs = await conn.fetch(
        """SELECT i.*, (SELECT count(*) FROM import_error e
                        WHERE e.job_id = i.job_id AND e.seq = i.seq) AS errors
           FROM import_input i WHERE i.job_id = $1 ORDER BY i.seq""",
        id,
    )
    return ImportJob(
        id=row["id"],
        status=row["status"],
        request=row["request"],
        input_source=row["input_source"],
        export_url=row["export_url"],
        export_type=row["export_type"],
        export_parameters=orjson.loads(row["export_parameters"]),
        export_status_url=row["export_status_url"],
        requested_by=orjson.loads(row["requested_by"]),
        bearer=row["bearer"],
        error=row["error"],
        created=row["created"],
        started=row["started"],
        finished=row["finished"],
        expires=row["expires"],
        inputs=[
            ImportInput(
                i["seq"],
                i["type"],
                i["url"],
                i["status"],
                i["bytes"],
                i["sha256"],
                i["line"],
                i["loaded"],
                i["errors"],
            )
            for i in inputs
        ],
    )


async def insert(
    conn: Conn,
    id: uuid.UUID,
    asked: ImportRequest,
    *,
    request: str,
    requested_by: dict[str, Any],
    bearer: str | None,
) -> None:
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO import_job (id, status, request, input_source, export_url,
                   export_type, export_parameters, requested_by, bearer)
               VALUES ($1, 'accepted', $2, $3, $4, $5, $6, $7, $8)""",
            id,
            request,
            asked.input_source,
            asked.export_url,
            asked.export_type if asked.export_url is not None else None,
            orjson.dumps(list(asked.export_parameters)).decode(),
            orjson.dumps(requested_by).decode(),
            bearer,
        )
        await _add(conn, id, asked.inputs)


async def _add(conn: Conn, id: uuid.UUID, inputs: Sequence[Input]) -> None:
    await conn.executemany(
        "INSERT INTO import_input (job_id, seq, type, url) VALUES ($1, $2, $3, $4)",
        [(id, seq, i.type, i.url) for seq, i in enumerate(inputs, start=1)],
    )


async def add_inputs(conn: Conn, id: uuid.UUID, inputs: Sequence[Input]) -> bool:
    """The inputs a pulled manifest names; False if the job is no longer running."""
    async with conn.transaction():
        if not await _running(conn, id):
            return False
        await _add(conn, id, inputs)
    return True


async def _running(conn: Conn, id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT true FROM import_job WHERE id = $1 AND status = 'running' FOR UPDATE", id
        )
    )


async def start(conn: Conn, id: uuid.UUID) -> bool:
    """An accepted job begins; False if it is not open any more."""
    return bool(
        await conn.fetchval(
            """UPDATE import_job SET status = 'running', started = coalesce(started, now())
               WHERE id = $1 AND status IN ('accepted', 'running') RETURNING true""",
            id,
        )
    )


async def export_started(conn: Conn, id: uuid.UUID, status_url: str) -> None:
    await conn.execute(
        "UPDATE import_job SET export_status_url = $2 WHERE id = $1 AND status = 'running'",
        id,
        status_url,
    )


async def source(conn: Conn, id: uuid.UUID, seq: int, size: int, sha256: str) -> None:
    """The size and SHA-256 of an input, as first read."""
    await conn.execute(
        "UPDATE import_input SET bytes = $3, sha256 = $4 WHERE job_id = $1 AND seq = $2",
        id,
        seq,
        size,
        sha256,
    )


async def save(
    conn: Conn,
    id: uuid.UUID,
    seq: int,
    *,
    line: int,
    loaded: int,
    status: str,
    errors: Sequence[tuple[int, dict[str, Any]]] = (),
) -> bool:
    """Record a chunk of an input: the line it is at, what it wrote and the errors (line,
    OperationOutcome) of its lines, together; False if the job is no longer running."""
    async with conn.transaction():
        if not await _running(conn, id):
            return False
        await conn.execute(
            """UPDATE import_input SET line = greatest(line, $3), loaded = loaded + $4,
                   status = $5
               WHERE job_id = $1 AND seq = $2""",
            id,
            seq,
            line,
            loaded,
            status,
        )
        if errors:
            await conn.executemany(
                """INSERT INTO import_error (job_id, seq, line, outcome) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (job_id, seq, line) DO NOTHING""",
                [(id, seq, n, orjson.dumps(outcome).decode()) for n, outcome in errors],
            )
    return True


async def error_outcomes(conn: Executor, id: uuid.UUID, seq: int) -> list[str]:
    """The OperationOutcomes of an input's errors, as JSON, by line."""
    rows = await conn.fetch(
        "SELECT outcome::text FROM import_error WHERE job_id = $1 AND seq = $2 ORDER BY line",
        id,
        seq,
    )
    return [orjson.dumps(orjson.loads(row[0])).decode() for row in rows]


async def complete(conn: Conn, id: uuid.UUID, expiry_seconds: float) -> bool:
    """The job is done (its access token forgotten); False if it was not running."""
    async with conn.transaction():
        await conn.execute("UPDATE import_job SET bearer = NULL WHERE id = $1", id)
        return await background.finish(conn, TABLE, id, expiry_seconds)


async def fail(conn: Conn, id: uuid.UUID, reason: str, expiry_seconds: float) -> None:
    async with conn.transaction():
        await conn.execute("UPDATE import_job SET bearer = NULL WHERE id = $1", id)
        await background.fail(conn, TABLE, id, reason, expiry_seconds)


async def cancel(conn: Executor, id: uuid.UUID) -> bool:
    """Cancel a job (or drop a finished one's result); False if there is none to cancel."""
    return bool(
        await conn.fetchval(
            """UPDATE import_job SET status = 'cancelled', bearer = NULL,
                   finished = coalesce(finished, now())
               WHERE id = $1 AND status IN ('accepted', 'running', 'completed', 'failed')
               RETURNING true""",
            id,
        )
    )
