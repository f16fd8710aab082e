"""`$import` from the server's import directory (`file:` URLs, FLODE_IMPORT_DIR) and the size
limits of what it reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from .conftest import client_of, create_database, export_config, running
from .importing import errors, file_server, ndjson, parameters, run
from .test_import import patients, refused

MAX_BYTES = 64 * 1024
MAX_LINE = 8 * 1024


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("import-dir")


@pytest.fixture(scope="module")
async def client(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, directory: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """A server that reads files of its import directory, at most MAX_BYTES a file and
    MAX_LINE a line."""
    url = await create_database(database_url, "import_files")
    config = replace(
        export_config(tmp_path_factory.mktemp("import-files")),
        import_dir=directory,
        import_max_bytes=MAX_BYTES,
        max_body_bytes=MAX_LINE,
    )
    with running(config, url) as served:
        async with client_of(served) as found:
            yield found


async def test_reads_ndjson_files_inside_the_import_directory(
    client: httpx.AsyncClient, directory: Path
) -> None:
    (directory / "region").mkdir()
    (directory / "region" / "Patient.ndjson.gz").write_bytes(ndjson(patients("dir", 3), gz=True))
    url = (directory / "region" / "Patient.ndjson.gz").as_uri()
    found = await run(client, parameters([("Patient", url)], storage="file"))
    assert found["output"] == [{"type": "Patient", "url": url, "count": 3}]
    assert (await client.get("Patient/dir-2")).status_code == 200


async def test_refuses_a_file_url_outside_the_import_directory(
    client: httpx.AsyncClient, directory: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "Patient.ndjson"
    outside.write_bytes(ndjson(patients("outside", 1)))
    (directory / "link.ndjson").symlink_to(outside)
    for url in (
        outside.as_uri(),
        f"{directory.as_uri()}/../{outside.parent.name}/Patient.ndjson",
        (directory / "link.ndjson").as_uri(),
    ):
        said = await refused(client, parameters([("Patient", url)]))
        assert "outside the server's import directory" in said
    said = await refused(client, parameters([("Patient", (directory / "x.json").as_uri())]))
    assert ".ndjson" in said
    assert (await client.get("Patient/outside-0")).status_code == 404


async def test_an_input_larger_than_the_limit_is_reported_and_not_imported(
    client: httpx.AsyncClient,
) -> None:
    with file_server() as served:
        big = patients("big", 1000)
        url = served.add("big.ndjson", ndjson(big))
        assert len(ndjson(big)) > MAX_BYTES
        found = await run(client, parameters([("Patient", url)]))
        assert found["output"][0]["count"] == 0
        (outcome,) = await errors(client, found)
        assert f"larger than {MAX_BYTES} bytes" in outcome["issue"][0]["diagnostics"]
    assert (await client.get("Patient/big-0")).status_code == 404


async def test_a_line_longer_than_the_largest_request_body_is_reported(
    client: httpx.AsyncClient, directory: Path
) -> None:
    long = {**patients("long", 1)[0], "name": [{"family": "x" * MAX_LINE}]}
    (directory / "long.ndjson").write_bytes(ndjson([long, *patients("short", 1)]))
    found = await run(client, parameters([("Patient", (directory / "long.ndjson").as_uri())]))
    assert found["output"][0]["count"] == 1
    (outcome,) = await errors(client, found)
    assert outcome["issue"][0]["diagnostics"] == f"line 1: longer than {MAX_LINE} bytes"
    assert (await client.get("Patient/short-0")).status_code == 200
