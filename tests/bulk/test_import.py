"""`$import` against the real server: kick-off, status, result, error files, cancellation and
who may import, with the NDJSON served by a real HTTP server on the loopback."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from conftest import Server
from flode.auth.local import issue_local

from .flow import finished
from .importing import ASYNC, Files, errors, file_server, kick_off, ndjson, parameters, result, run


@pytest.fixture(scope="module")
def files() -> Iterator[Files]:
    with file_server() as found:
        yield found


def patients(tag: str, n: int) -> list[dict[str, Any]]:
    return [
        {
            "resourceType": "Patient",
            "id": f"{tag}-{k}",
            "name": [{"family": f"Import{tag}", "given": [str(k)]}],
            "gender": "female",
        }
        for k in range(n)
    ]


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


async def held(client: httpx.AsyncClient, files: Files, tag: str) -> tuple[str, threading.Event]:
    """An import of two Patients whose file is not served until the event is set."""
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 2)))
    release = files.hold(f"{tag}.ndjson")
    return await kick_off(client, parameters([("Patient", url)])), release


async def test_returns_202_with_a_status_url_for_an_import_kick_off(
    client: httpx.AsyncClient, server: Server, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 3)))
    response = await client.post("$import", json=parameters([("Patient", url)]), headers=ASYNC)
    assert response.status_code == 202, response.text
    location = response.headers["content-location"]
    assert location.startswith(f"{server.base_url}/$import/")
    assert response.json()["resourceType"] == "OperationOutcome"
    found = await result(client, location)
    assert found["output"] == [{"type": "Patient", "url": url, "count": 3}]
    assert found["error"] == []
    assert found["requiresAccessToken"] is True
    assert found["request"] == f"{server.base_url}/$import"
    for k in range(3):
        got = await client.get(f"Patient/{tag}-{k}")
        assert got.status_code == 200
        assert got.json()["name"][0]["family"] == f"Import{tag}"
        assert got.json()["meta"]["versionId"] == "1"
    search = await client.get("Patient", params={"family": f"Import{tag}"})
    assert search.json()["total"] == 3


async def test_answers_202_with_progress_while_the_import_runs(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    status_url, release = await held(client, files, tag)
    response = await client.get(status_url)
    assert response.status_code == 202
    assert response.headers["retry-after"].isdigit()
    assert 0 < len(response.headers["x-progress"]) < 100
    assert (await client.get(f"Patient/{tag}-0")).status_code == 404
    release.set()
    found = await result(client, status_url)
    assert found["output"][0]["count"] == 2


async def test_imports_gzip_compressed_ndjson(client: httpx.AsyncClient, files: Files) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson.gz", ndjson(patients(tag, 4), gz=True))
    found = await run(client, parameters([("Patient", url)]))
    assert found["output"][0]["count"] == 4
    assert (await client.get(f"Patient/{tag}-3")).status_code == 200


async def test_reports_each_invalid_line_and_imports_the_rest(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    good = patients(tag, 3)
    lines: list[dict[str, Any] | str] = [
        good[0],
        "{not json",
        {**good[1], "birthDate": "31/12/1999"},
        {"resourceType": "Observation", "id": f"{tag}-obs", "status": "final"},
        "",
        good[2],
    ]
    url = files.add(f"{tag}.ndjson", ndjson(lines))
    found = await run(client, parameters([("Patient", url)]))
    assert found["output"] == [{"type": "Patient", "url": url, "count": 2}]
    assert [(e["inputUrl"], e["count"], e["inputType"]) for e in found["error"]] == [
        (url, 3, "Patient")
    ]
    outcomes = await errors(client, found)
    diagnostics = [o["issue"][0]["diagnostics"] for o in outcomes]
    assert diagnostics[0].startswith("line 2: ")
    assert diagnostics[1].startswith(f"line 3 (Patient/{tag}-1): ")
    assert "31/12/1999" in diagnostics[1]
    assert diagnostics[2].startswith("line 4: a Observation in an input of type Patient")
    assert all(o["resourceType"] == "OperationOutcome" for o in outcomes)
    assert (await client.get(f"Patient/{tag}-0")).status_code == 200
    assert (await client.get(f"Patient/{tag}-1")).status_code == 404
    assert (await client.get(f"Patient/{tag}-2")).status_code == 200
    assert (await client.get(f"Observation/{tag}-obs")).status_code == 404


async def test_an_input_that_cannot_be_fetched_is_reported_and_the_others_are_imported(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 1)))
    missing = f"{files.base}/files/{tag}-missing.ndjson"
    found = await run(client, parameters([("Patient", missing), ("Patient", url)]))
    assert [o["count"] for o in found["output"]] == [0, 1]
    (outcome,) = await errors(client, found)
    assert "HTTP 404" in outcome["issue"][0]["diagnostics"]
    assert found["error"][0]["inputUrl"] == missing


async def test_importing_the_same_file_again_writes_new_versions_never_copies(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 2)))
    await run(client, parameters([("Patient", url)]))
    await run(client, parameters([("Patient", url)]))
    got = await client.get(f"Patient/{tag}-1")
    assert got.json()["meta"]["versionId"] == "2"
    search = await client.get("Patient", params={"family": f"Import{tag}"})
    assert search.json()["total"] == 2


async def test_imported_writes_are_announced_and_recorded_in_the_access_log(
    client: httpx.AsyncClient, server: Server, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 2)))
    status_url = await kick_off(client, parameters([("Patient", url)]))
    await result(client, status_url)
    job = status_url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(server.database_url)
    try:
        logged = await conn.fetch(
            """SELECT patient_id, interaction, action FROM audit_event
               WHERE patient_id = ANY($1::text[]) ORDER BY patient_id""",
            [f"{tag}-0", f"{tag}-1"],
        )
        announced = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE resource_type = 'Patient' AND resource_id LIKE $1",
            f"{tag}-%",
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in logged] == [
        (f"{tag}-0", "update", "U"),
        (f"{tag}-1", "update", "U"),
    ]
    assert announced == 2
    assert job


# -- refused kick-offs: 4xx with an OperationOutcome, nothing imported ------------------------


async def refused(
    client: httpx.AsyncClient, body: Any, status: int = 400, headers: dict[str, str] | None = None
) -> str:
    response = await client.post("$import", json=body, headers=headers or ASYNC)
    assert response.status_code == status, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "content-location" not in response.headers
    diagnostics: str = outcome["issue"][0]["diagnostics"]
    return diagnostics


async def test_refuses_a_kick_off_without_prefer_respond_async(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 1)))
    said = await refused(
        client, parameters([("Patient", url)]), headers={"Accept": "application/fhir+json"}
    )
    assert "respond-async" in said
    await asyncio.sleep(0.3)
    assert (await client.get(f"Patient/{tag}-0")).status_code == 404
    assert not [a for a in files.asked if tag in a[1]]


async def test_refuses_an_unsupported_input_format(client: httpx.AsyncClient) -> None:
    body = parameters([("Patient", "http://127.0.0.1:1/x.ndjson")], input_format="text/csv")
    assert "inputFormat" in await refused(client, body)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"resourceType": "Parameters", "parameter": []}, "at least one input"),
        ({"resourceType": "Patient"}, "cannot be a Patient"),
        ([1, 2], "JSON object"),
        (parameters([("Patients", "http://127.0.0.1:1/x.ndjson")]), "not a FHIR R4 resource"),
        (parameters([("Patient", "http://127.0.0.1:1/x.ndjson")], storage="aws-s3"), "aws-s3"),
        (
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "inputFormat", "valueCode": "application/fhir+ndjson"},
                    {"name": "input", "part": [{"name": "type", "valueCode": "Patient"}]},
                ],
            },
            "input.url",
        ),
        ({"inputFormat": "application/fhir+ndjson", "input": "x"}, "must be an array"),
        ({"exportUrl": "http://127.0.0.1:1/$export", "exportType": "sometimes"}, "exportType"),
    ],
)
async def test_refuses_a_kick_off_that_is_not_of_a_known_form(
    client: httpx.AsyncClient, body: Any, said: str
) -> None:
    assert said in await refused(client, body)


async def test_refuses_a_host_that_is_not_on_the_allow_list(client: httpx.AsyncClient) -> None:
    # A literal address off the list: refused without any request to it.
    said = await refused(client, parameters([("Patient", "http://203.0.113.7/Patient.ndjson")]))
    assert "allow-list" in said
    said = await refused(client, {"exportUrl": "https://fhir.example.org/$export"})
    assert "allow-list" in said


async def test_refuses_file_urls_when_the_server_has_no_import_directory(
    client: httpx.AsyncClient,
) -> None:
    said = await refused(client, parameters([("Patient", "file:///etc/passwd")]))
    assert "FLODE_IMPORT_DIR" in said
    said = await refused(client, parameters([("Patient", "gopher://127.0.0.1/x")]))
    assert "neither an http(s) nor a file URL" in said


# -- who may import ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scopes",
    [["system/Patient.rs"], ["user/Patient.cu"], ["system/Patient.c"], ["system/Observation.cu"]],
)
async def test_refuses_a_token_without_system_scopes_to_create_and_update_the_types(
    client: httpx.AsyncClient, server: Server, test_config: Any, scopes: list[str]
) -> None:
    headers = {
        **ASYNC,
        "Authorization": "Bearer "
        + issue_local(test_config, server.root_url, scopes, client_id="importer"),
    }
    body = parameters([("Patient", "http://127.0.0.1:1/x.ndjson")])
    said = await refused(client, body, 403, headers)
    assert "Patient" in said


async def test_a_token_with_system_create_and_update_scopes_for_the_type_may_import(
    client: httpx.AsyncClient, server: Server, test_config: Any, files: Files
) -> None:
    tag = new_tag()
    url = files.add(f"{tag}.ndjson", ndjson(patients(tag, 1)))
    auth = issue_local(test_config, server.root_url, ["system/Patient.cu"], client_id="importer")
    headers = {"Authorization": f"Bearer {auth}"}
    status_url = await kick_off(client, parameters([("Patient", url)]), headers)
    async with httpx.AsyncClient(timeout=30, headers=headers) as other:
        found = await result(other, status_url)
    assert found["output"][0]["count"] == 1
    # Another client does not see it; the operator (an administrator) does.
    stranger = issue_local(test_config, server.root_url, ["system/Patient.cu"], client_id="x")
    response = await client.get(status_url, headers={"Authorization": f"Bearer {stranger}"})
    assert response.status_code == 404
    assert (await client.get(status_url)).status_code == 200


async def test_a_ping_and_pull_without_types_needs_scopes_for_every_type(
    client: httpx.AsyncClient, server: Server, test_config: Any, files: Files
) -> None:
    auth = issue_local(test_config, server.root_url, ["system/Patient.cu"], client_id="importer")
    headers = {**ASYNC, "Authorization": f"Bearer {auth}"}
    said = await refused(client, {"exportUrl": f"{files.base}/export"}, 403, headers)
    assert "every type" in said


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelling_an_import_stops_it_and_its_status_answers_404_after(
    client: httpx.AsyncClient, files: Files
) -> None:
    tag = new_tag()
    status_url, release = await held(client, files, tag)
    for _ in range(200):  # until its process is fetching the file
        if any(tag in a[1] for a in files.asked):
            break
        await asyncio.sleep(0.05)
    response = await client.delete(status_url)
    assert response.status_code == 202
    assert response.json()["resourceType"] == "OperationOutcome"
    release.set()
    assert (await client.get(status_url)).status_code == 404
    assert (await client.delete(status_url)).status_code == 404
    await asyncio.sleep(0.5)
    assert (await client.get(f"Patient/{tag}-0")).status_code == 404


async def test_an_unknown_import_answers_404(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"$import/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("$import/not-a-job")).status_code == 404
    assert (await client.delete(f"$import/{uuid.uuid4()}")).status_code == 404


async def test_the_capability_statement_lists_import(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    names = {o["name"] for o in statement["rest"][0]["operation"]}
    assert {"export", "import"} <= names


async def test_the_status_of_a_failed_pull_is_500_with_why(
    client: httpx.AsyncClient, files: Files
) -> None:
    status_url = await kick_off(
        client, {"exportUrl": f"{files.base}/nothing-here.json", "exportType": "static"}
    )
    response = await finished(client, status_url)
    assert response.status_code == 500
    assert "HTTP 404" in response.json()["issue"][0]["diagnostics"]
