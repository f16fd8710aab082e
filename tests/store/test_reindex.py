"""Re-indexing jobs write the rows the indexer computes now, record their progress with each
batch, and resume after a restart where they stopped."""

from __future__ import annotations

import uuid

import asyncpg
import httpx

from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.indexer import Indexer
from flode.store.reindex import Reindexer

from .test_indexer import index_rows


async def test_a_job_restores_the_index_rows_of_every_resource_of_its_types(
    client: httpx.AsyncClient, database_url: str
) -> None:
    id = f"rx-{uuid.uuid4()}"
    patient = {"resourceType": "Patient", "id": id, "name": [{"family": "Ödman"}]}
    assert (await client.put(f"Patient/{id}", json=patient)).status_code == 201
    before = await index_rows(database_url, "Patient", id)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        await pool.execute(
            "DELETE FROM search_string WHERE resource_pk = "
            "(SELECT pk FROM resource WHERE resource_type = 'Patient' AND id = $1)",
            id,
        )
        assert (await index_rows(database_url, "Patient", id))["string"] == set()
        reindexer = Reindexer(pool, Indexer(SearchParameters.load(Definitions.load())))
        job = await reindexer.start(["Patient"])
        await reindexer.wait()
        done = await reindexer.status(job.id)
        assert done is not None
        assert done.status == "completed"
        assert done.done == done.total == job.total
    finally:
        await pool.close()
    assert await index_rows(database_url, "Patient", id) == before


async def test_a_job_left_running_by_a_stopped_process_resumes_after_its_last_batch(
    client: httpx.AsyncClient, database_url: str
) -> None:
    ids = [f"rx-{uuid.uuid4()}" for _ in range(4)]
    for id in ids:
        resource = {"resourceType": "Basic", "id": id, "code": {"text": "före"}}
        assert (await client.put(f"Basic/{id}", json=resource)).status_code == 201
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        pks = [
            await pool.fetchval(
                "SELECT pk FROM resource WHERE resource_type = 'Basic' AND id = $1", id
            )
            for id in ids
        ]
        await pool.execute("DELETE FROM search_token WHERE resource_pk = ANY($1::bigint[])", pks)
        # What a process stopped after its first batch (the first two resources) leaves behind.
        job = uuid.uuid4()
        await pool.execute(
            """INSERT INTO reindex_job (id, types, status, total, done, last_pk)
               VALUES ($1, '{Basic}', 'running', 4, 2, $2)""",
            job,
            pks[1],
        )
        reindexer = Reindexer(pool, Indexer(SearchParameters.load(Definitions.load())), batch=1)
        assert await reindexer.resume() >= 1
        await reindexer.wait()
        finished = await reindexer.status(job)
        assert finished is not None
        assert finished.status == "completed"
        assert finished.done == finished.total == 4
        indexed = await pool.fetch(
            "SELECT DISTINCT resource_pk FROM search_token WHERE resource_pk = ANY($1::bigint[])",
            pks,
        )
        # Only the resources after the last finished batch were indexed again.
        assert {row["resource_pk"] for row in indexed} == set(pks[2:])
    finally:
        await pool.close()
