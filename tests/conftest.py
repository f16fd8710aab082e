"""Test fixtures: one embedded PostgreSQL and one real Flöde HTTP server per test session."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from flode import logs
from flode.app import build_app
from flode.auth.local import issue_local
from flode.config import Config
from flode.store.embedded import EmbeddedPostgres

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


def start_server(config: Config, database_url: str) -> tuple[uvicorn.Server, threading.Thread]:
    app = build_app(config, database_url, access_log=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    return server, thread


def bound_port(server: uvicorn.Server) -> int:
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port


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
    uvicorn_server, thread = start_server(test_config, database_url)
    root = f"http://127.0.0.1:{bound_port(uvicorn_server)}"
    token = issue_local(test_config, root, lifetime=24 * 3600)
    yield Server(f"{root}/fhir", root, database_url, token)
    uvicorn_server.should_exit = True
    thread.join(10)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the test server, with an operator's token."""
    async with httpx.AsyncClient(
        base_url=server.base_url + "/", timeout=30, headers=server.auth
    ) as c:
        yield c
