"""`flode load` as an operator runs it: real processes, a real PostgreSQL, the test data."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving import free_port, postgres_running, wait_until_serving

from .support import (
    FLODE,
    NDJSON,
    SMALLEST,
    SYNTHEA,
    fetchval,
    flode_load,
)


def synthea_entries() -> Counter[tuple[str, str]]:
    """How often each (type, id) is created by the in-repo Synthea bundles."""
    found: Counter[tuple[str, str]] = Counter()
    for path in SYNTHEA.glob("*.json.gz"):
        for entry in json.loads(gzip.decompress(path.read_bytes()))["entry"]:
            found[(entry["resource"]["resourceType"], entry["resource"]["id"])] += 1
    return found


async def stored(url: str) -> tuple[int, int]:
    """How many resources and versions the database holds."""
    resources = await fetchval(url, "SELECT count(*) FROM resource")
    versions = await fetchval(url, "SELECT count(*) FROM resource_version")
    assert isinstance(resources, int)
    assert isinstance(versions, int)
    return resources, versions


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The rows of the summary table: what → count."""
    rows = {}
    for line in result.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 2:
            rows[cells[0]] = cells[1].replace(",", "")
    return rows


@pytest.mark.parametrize("fast", [False, True], ids=["transactions", "fast"])
async def test_loads_synthea_bundles_once_and_skips_them_when_run_again(
    fresh_url: str, tmp_path: Path, fast: bool
) -> None:
    options = ["--fast"] if fast else []
    entries = synthea_entries()
    first = flode_load("--database-url", fresh_url, *options, SYNTHEA, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    table = summary(first)
    assert table["files loaded"] == str(len(list(SYNTHEA.glob("*.json.gz"))))
    assert table["files failed"] == "0"
    assert table["resources written"] == str(sum(entries.values()))
    assert float(table["resources/s"]) > 0
    # Organizations and Practitioners shared by several bundles are versions, not copies.
    assert await stored(fresh_url) == (len(entries), sum(entries.values()))
    # Each file is recorded in the access log with its patients.
    records = [json.loads(line) for line in first.stderr.splitlines() if '"load recorded"' in line]
    assert len(records) == len(list(SYNTHEA.glob("*.json.gz")))
    assert all(len(record["patients"]) == 1 for record in records)
    assert {record["method"] for record in records} == {"fast" if fast else "transaction"}

    again = flode_load("--database-url", fresh_url, *options, SYNTHEA, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert summary(again)["files skipped (loaded before)"] == table["files loaded"]
    assert summary(again)["resources written"] == "0"
    assert await stored(fresh_url) == (len(entries), sum(entries.values()))

    forced = flode_load("--database-url", fresh_url, *options, "--force", SMALLEST, cwd=tmp_path)
    assert forced.returncode == 0, forced.stdout + forced.stderr
    resources, versions = await stored(fresh_url)
    assert resources == len(entries), "loading a file again never duplicates a resource"
    assert versions == sum(entries.values()) + int(summary(forced)["resources written"])


@pytest.mark.parametrize("fast", [False, True], ids=["transactions", "fast"])
async def test_loads_bulk_data_ndjson_whose_references_need_the_other_files(
    fresh_url: str, tmp_path: Path, fast: bool
) -> None:
    options = ["--fast"] if fast else []
    result = flode_load("--database-url", fresh_url, *options, NDJSON, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = sum(len(gzip.decompress(p.read_bytes()).splitlines()) for p in NDJSON.glob("*.gz"))
    assert summary(result)["resources written"] == str(lines)
    assert await stored(fresh_url) == (lines, lines)
    # `Location?identifier=…` became the Location it names.
    unresolved = await fetchval(
        fresh_url,
        """SELECT count(*) FROM search_reference s
           WHERE s.resource_type = 'Immunization' AND s.param = 'location'
           AND NOT EXISTS (SELECT 1 FROM resource r
                           WHERE r.resource_type = s.target_type AND r.id = s.target_id)""",
    )
    located = await fetchval(
        fresh_url,
        "SELECT count(*) FROM search_reference WHERE resource_type = 'Immunization' "
        "AND param = 'location' AND target_type = 'Location'",
    )
    assert (unresolved, located) == (0, 161)


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def create(resource: dict[str, Any], full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


PATIENT = "urn:uuid:8c5ad52c-34c4-4a63-9a48-2f2f8ad4a3a1"
OTHER = "urn:uuid:1d2b7a7e-9a43-4c55-b5b0-6a0f3c0e9e51"


@pytest.mark.parametrize("fast", [False, True], ids=["transactions", "fast"])
async def test_a_bad_file_fails_alone_and_the_report_says_why_and_what_to_do(
    fresh_url: str, tmp_path: Path, fast: bool
) -> None:
    good, malformed, invalid = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "x.json"
    good.write_text(json.dumps(transaction(create({"resourceType": "Patient"}, PATIENT))))
    malformed.write_text('{"resourceType": "Bundle", "type": ')
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": OTHER},
        "colour": "red",
    }
    invalid.write_text(
        json.dumps(
            transaction(
                create({"resourceType": "Patient"}, OTHER), create(observation, f"{OTHER}0")
            )
        )
    )
    missing = tmp_path / "missing.ndjson"
    options = ["--fast"] if fast else []
    result = flode_load(
        "--database-url", fresh_url, *options, good, malformed, invalid, missing, cwd=tmp_path
    )
    assert result.returncode == 1
    table = summary(result)
    assert (table["files loaded"], table["files failed"]) == ("1", "3")
    report = result.stdout
    assert "bad.json" in report
    assert "The file is not valid JSON" in report
    assert "x.json" in report
    assert "Bundle.entry[1]" in report
    assert "colour" in report
    assert "Correct the resource and run the same command again" in report
    assert "missing.ndjson" in report
    assert "no such file or folder" in report
    # The good file is loaded; nothing of the invalid transaction is.
    ids = await fetchval(fresh_url, "SELECT array_agg(id ORDER BY id) FROM resource")
    assert ids == [PATIENT.removeprefix("urn:uuid:")]


async def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:1/flode"
    result = flode_load("--database-url", url, SMALLEST, cwd=tmp_path)
    assert result.returncode == 2
    assert "Cannot connect to the database at postgresql://postgres@127.0.0.1:1/flode" in (
        result.stderr
    )
    assert "Nothing was loaded" in result.stderr


def test_refuses_both_a_data_directory_and_a_database_url(tmp_path: Path) -> None:
    result = flode_load(
        "--data-dir", tmp_path, "--database-url", "postgresql://x/y", SMALLEST, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "either --data-dir or --database-url" in result.stderr


def test_loads_into_a_data_directory_starting_its_postgresql_and_stopping_it_after(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    result = flode_load("--data-dir", data_dir, SMALLEST, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(result)["files loaded"] == "1"
    assert not postgres_running(data_dir)


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    data_dir = tmp_path / "data"
    port = free_port()
    command = [*FLODE, "serve", "--no-demo", "--insecure-dev", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        wait_until_serving(base, process)
        yield process, base, data_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)


def test_loads_into_the_data_directory_of_a_running_server_which_serves_it_at_once(
    serving: tuple[subprocess.Popen[str], str, Path], tmp_path: Path
) -> None:
    process, base, data_dir = serving
    result = flode_load("--fast", "--data-dir", data_dir, SMALLEST, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    patient = "e4531916-b162-4f4b-90c2-ce37e132b8d4"
    assert httpx.get(f"{base}/Patient/{patient}").status_code == 200
    found = httpx.get(
        f"{base}/Observation", params={"subject": f"Patient/{patient}", "_total": "accurate"}
    ).json()
    assert found["total"] == 33
    # The load let go of the server's PostgreSQL without stopping it.
    assert postgres_running(data_dir)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert not postgres_running(data_dir)


def interrupted_after_one_file(url: str, cwd: Path) -> tuple[int, str]:
    """`flode load` of the Synthea bundles with one worker, stopped (SIGTERM) once it has
    loaded a file: its exit code and what it printed."""
    process = subprocess.Popen(
        [*FLODE, "load", "--workers", "1", "--database-url", url, str(SYNTHEA)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if '"load recorded"' in line:
            break
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return process.returncode, out


async def test_an_interrupted_load_resumes_where_it_stopped(fresh_url: str, tmp_path: Path) -> None:
    code, out = interrupted_after_one_file(fresh_url, tmp_path)
    assert code == 130
    assert "Run the same command again to load the rest" in out
    entries = synthea_entries()
    resumed = flode_load("--database-url", fresh_url, SYNTHEA, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    table = summary(resumed)
    assert int(table["files skipped (loaded before)"]) >= 1
    done = int(table["files loaded"]) + int(table["files skipped (loaded before)"])
    assert done == len(list(SYNTHEA.glob("*.json.gz")))
    resources, versions = await stored(fresh_url)
    assert resources == len(entries)
    # A file committed but not yet recorded when the load stopped is written again: as new
    # versions, never as copies.
    assert versions >= sum(entries.values())
