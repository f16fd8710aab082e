"""`flode export DIR` as an operator runs it: NDJSON files and a manifest in a folder, progress on
the terminal, and the files load into an empty database with `flode load`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from e2e.synthea import read_json

from .conftest import Source, create_database

FLODE = [sys.executable, "-m", "flode"]


def flode(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLODE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


async def current(url: str) -> dict[tuple[str, str], Any]:
    """Every current resource of the database, parsed, without meta.versionId/lastUpdated."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            """SELECT r.resource_type, r.id, v.content FROM resource r
               JOIN resource_version v ON v.resource_pk = r.pk AND v.version = r.version
               WHERE NOT r.deleted"""
        )
    finally:
        await conn.close()
    found = {}
    for row in rows:
        resource = read_json(row["content"])
        meta = resource.pop("meta", {})
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        found[(row["resource_type"], row["id"])] = resource | ({"meta": meta} if meta else {})
    return found


def exported(folder: Path) -> list[dict[str, Any]]:
    manifest = json.loads((folder / "manifest.json").read_text())
    out = []
    for item in manifest["output"]:
        lines = (folder / item["url"]).read_text().splitlines()
        assert len(lines) == item["count"]
        out += [read_json(line) for line in lines]
    return out


async def test_exports_the_types_asked_for_into_a_folder(source: Source, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    result = flode(
        "export", "--database-url", source.database_url, "--type", "Patient,Observation",
        "--type", "Encounter", str(folder),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "resources/s" in result.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["request"] == "flode export"
    assert manifest["requiresAccessToken"] is False
    resources = exported(folder)
    counts = Counter(r["resourceType"] for r in resources)
    stored = await current(source.database_url)
    assert counts == Counter(t for t, _ in stored if t in ("Patient", "Observation", "Encounter"))


async def test_what_it_exports_loads_into_an_empty_database(
    source: Source, tmp_path: Path, database_url: str
) -> None:
    folder = tmp_path / "out"
    result = flode("export", "--database-url", source.database_url, str(folder))
    assert result.returncode == 0, result.stderr
    files = sorted(str(p) for p in folder.glob("*.ndjson"))
    target = await create_database(database_url, "export_load")
    loaded = flode("load", "--database-url", target, *files)
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr
    assert await current(target) == await current(source.database_url)


def test_refuses_what_it_cannot_do(source: Source, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("keep me")
    db = ["--database-url", source.database_url]
    cases = [
        ([*db, "--type", "Nonsense", str(tmp_path / "a")], "Nonsense"),
        ([*db, "--since", "last week", str(tmp_path / "b")], "--since"),
        ([*db, str(tmp_path / "full")], "not empty"),
        ([*db, "--data-dir", str(tmp_path), str(tmp_path / "c")], "not both"),
    ]
    for args, says in cases:
        result = flode("export", *args)
        assert result.returncode == 2, result.stderr
        assert says in result.stderr
    assert (tmp_path / "full" / "something.txt").read_text() == "keep me"


def test_an_unreachable_database_is_reported(tmp_path: Path) -> None:
    url = "postgresql://nobody@127.0.0.1:1/nothing"
    result = flode("export", "--database-url", url, str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Cannot connect" in result.stderr
