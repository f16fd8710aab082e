"""Fixtures of the access-log tests: the session's server and database, databases of their own
for the tests that tamper with the log, and request contexts and tokens of clinicians."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from conftest import Server
from flode.auth.local import issue_local
from flode.config import Config
from flode.context import RequestContext
from flode.fhir.definitions import Definitions
from flode.store.migrate import migrate

REVIEWER = ("user/AuditEvent.rs",)
UNIT = "SE2321000131-E000000000101"
PROVIDER = "SE2321000131-E000000000001"
USER = "SE2321000131-P000000000101"
COMMISSION = "SE2321000131-U000000000101"


def clinician(**changes: Any) -> RequestContext:
    """A clinician's request, as a token would make it."""
    values: dict[str, Any] = {
        "request_id": f"test-{uuid.uuid4()}",
        "base_url": "http://flode.test/fhir",
        "user_hsa_id": USER,
        "commission_hsa_id": COMMISSION,
        "care_unit_hsa_id": UNIT,
        "care_provider_hsa_id": PROVIDER,
        "client_id": "journal-app",
        "subject": USER,
    }
    values.update(changes)
    return RequestContext(**values)


def token(
    server: Server,
    config: Config,
    scopes: Sequence[str],
    context: Mapping[str, str] | None = None,
    client_id: str = "log-reviewer",
) -> dict[str, str]:
    """The Authorization header of a token with `scopes`."""
    raw = issue_local(config, server.root_url, scopes, client_id=client_id, context=context)
    return {"Authorization": f"Bearer {raw}"}


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def reviewer(server: Server, test_config: Config) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the server with a log reviewer's token (and no user)."""
    headers = token(server, test_config, REVIEWER, client_id=f"reviewer-{new_id()[:8]}")
    async with httpx.AsyncClient(base_url=server.base_url + "/", headers=headers) as c:
        yield c


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    """The FHIR R4 definitions, to validate what the log serves."""
    return Definitions.load()


@pytest.fixture(scope="session")
async def pool(server: Server) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session's database (migrated by the server)."""
    found = await asyncpg.create_pool(server.database_url, min_size=1, max_size=4)
    assert found is not None
    yield found
    await found.close()


@pytest.fixture
async def own_url(database_url: str) -> AsyncIterator[str]:
    """A database of the test's own, migrated, in the session's PostgreSQL: the chain there
    is the test's alone, to tamper with."""
    name = f"audit_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def own(own_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(own_url)
    yield conn
    await conn.close()


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    """Write `resource` (as the operator) and return its id."""
    response = await client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    id: str = response.json()["id"]
    return id
