"""Test fixtures: one embedded PostgreSQL and one real Flöde HTTP server per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from flode import logs
from flode.app import build_app
from flode.auth.local import issue_local
from flode.config import Config
from flode.store.embedded import EmbeddedPostgres
from serving import serving

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@dataclass(frozen=True)
class Server:
    base_url: str
    """The FHIR base, e.g. http://127.0.0.1:43123/fhir"""
    root_url: str
    database_url: str
    token: str = ""
    """An access token with every scope (`system/*.cruds`), as an operator's."""

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header of `token`."""
        return {"Authorization": f"Bearer {self.token}"}


logs.configure(json_lines=True)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("flode"))
    url = embedded.start()
    yield url
    embedded.stop()


@pytest.fixture(scope="session")
def test_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return replace(
        Config(),
        demo=False,
        max_body_bytes=1024 * 1024,
        data_dir=tmp_path_factory.mktemp("flode-data"),
    )


@pytest.fixture(scope="session")
def server(database_url: str, test_config: Config) -> Iterator[Server]:
    with serving(build_app(test_config, database_url, access_log=False)) as port:
        root = f"http://127.0.0.1:{port}"
        token = issue_local(test_config, root, lifetime=24 * 3600)
        yield Server(f"{root}/fhir", root, database_url, token)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the test server, with an operator's token."""
    async with httpx.AsyncClient(
        base_url=server.base_url + "/", timeout=30, headers=server.auth
    ) as c:
        yield c
