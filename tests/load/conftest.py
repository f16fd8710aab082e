"""Fixtures of the `flode load` tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from flode.load.files import FileLoader, FileResult
from flode.load.worker import Settings, open_loader
from flode.store.migrate import migrate

from .support import drop_database, new_database

Load = Callable[..., Awaitable[FileResult]]


@pytest.fixture
async def fresh_url(database_url: str) -> AsyncIterator[str]:
    """The URL of an empty database of its own."""
    url = await new_database(database_url)
    yield url
    await drop_database(database_url, url)


@pytest.fixture
async def migrated(fresh_url: str) -> str:
    """The URL of a database of its own with Flöde's schema and nothing else."""
    conn = await asyncpg.connect(fresh_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return fresh_url


@pytest.fixture(params=[False, True], ids=["transactions", "fast"])
async def load(
    migrated: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Load]:
    """Load a JSON document (written to a file) or a file, with a loader of the path under
    test; `force` loads files loaded before (with a loader of its own, opened beside the
    first)."""
    fresh_url = migrated
    fast: bool = request.param
    loaders: dict[bool, FileLoader] = {}
    async with (
        open_loader(Settings(fresh_url, tmp_path, fast, False, 1, True)) as once,
        open_loader(Settings(fresh_url, tmp_path, fast, True, 1, True)) as again,
    ):
        loaders.update({False: once, True: again})

        async def run(content: Any, name: str = "file.json", force: bool = False) -> FileResult:
            path = content if isinstance(content, Path) else tmp_path / name
            if not isinstance(content, Path):
                path.write_text(json.dumps(content))
            return await loaders[force].load(path, lambda resources, size: None)

        yield run
