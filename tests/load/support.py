"""What the `flode load` tests share: the test data, fresh databases on the session's
PostgreSQL, and the command run as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DATA = Path(__file__).resolve().parents[1] / "data"
SYNTHEA = DATA / "synthea"
NDJSON = DATA / "ndjson"
SMALLEST = SYNTHEA / "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json.gz"
FLODE = [sys.executable, "-m", "flode"]


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def new_database(database_url: str) -> str:
    name = f"load_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return with_database(database_url, name)


async def drop_database(database_url: str, url: str) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'DROP DATABASE "{urlsplit(url).path[1:]}" WITH (FORCE)')
    finally:
        await admin.close()


def flode_load(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`flode load …` in a process of its own, in `cwd` (where Flöde's default data directory
    is), its output wide enough to read in one line."""
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("FLODE_DATABASE_URL", None)
    return subprocess.run(
        [*FLODE, "load", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )


async def fetchval(url: str, query: str, *args: object) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()
