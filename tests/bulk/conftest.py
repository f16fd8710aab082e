"""A Flöde server of its own for the export tests, on a database of its own holding the ten
Synthea patients, with small export files (so a type splits over several) written to a
temporary directory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from flode.app import build_app
from flode.auth.local import issue_local
from flode.config import Config
from serving import serving

from .synthea import Resource, dataset, put_all

MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Served:
    base_url: str
    token: str
    """An operator's access token (every scope)."""
    config: Config

    def token_for(
        self, scopes: list[str], client_id: str, context: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The Authorization header of a token with these scopes."""
        root = self.base_url.removesuffix(self.config.base_path)
        token = issue_local(self.config, root, scopes, client_id=client_id, context=context)
        return {"Authorization": f"Bearer {token}"}

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class Source(Served):
    database_url: str
    export_dir: Path
    dataset: dict[tuple[str, str], Resource]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for (t, _), r in self.dataset.items() if t == resource_type]


def database_named(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def create_database(database_url: str, prefix: str) -> str:
    """An empty database of its own on the session's PostgreSQL; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return database_named(database_url, name)


def export_config(directory: Path) -> Config:
    return replace(
        Config(),
        demo=False,
        data_dir=directory / "data",
        export_dir=directory / "exports",
        export_file_max_bytes=MAX_FILE_BYTES,
        max_body_bytes=1024 * 1024,
    )


@contextmanager
def running(config: Config, database_url: str) -> Iterator[Served]:
    """A real HTTP server on the database while the block runs."""
    with serving(build_app(config, database_url, access_log=False)) as port:
        root = f"http://127.0.0.1:{port}"
        token = issue_local(config, root, lifetime=24 * 3600)
        yield Served(f"{root}{config.base_path}", token, config)


@pytest.fixture(scope="package")
async def source(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Source]:
    url = await create_database(database_url, "export_source")
    config = export_config(tmp_path_factory.mktemp("export-source"))
    assert config.export_dir is not None
    resources = dataset()
    with running(config, url) as served:
        async with client_of(served) as client:
            await put_all(client, list(resources.values()))
        yield Source(served.base_url, served.token, config, url, config.export_dir, resources)


def client_of(served: Served) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.base_url + "/", timeout=60, headers=served.auth)


@pytest.fixture
async def fhir(source: Source) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(source) as client:
        yield client
