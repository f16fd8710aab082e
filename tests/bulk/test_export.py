"""`$export` over HTTP as the Bulk Data Access IG describes it: kick-off, status, manifest,
files, cancellation and expiry; system, Patient and Group level; `_type`, `_since`,
`_typeFilter`; and a round trip into an empty server that gives back identical resources."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from e2e.synthea import dump_json, read_json
from flode.bulk.jobs import Exporter
from flode.fhir.definitions import Definitions
from flode.fhir.search_parameters import SearchParameters
from flode.store.search import SearchCompiler

from . import flow
from .conftest import (
    MAX_FILE_BYTES,
    Source,
    client_of,
    create_database,
    export_config,
    running,
)
from .expected import every_patient
from .synthea import put_all


def key(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


def without_version(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    out = {k: v for k, v in resource.items() if k != "meta"}
    return out | ({"meta": meta} if meta else {})


async def stored_keys(source: Source) -> set[tuple[str, str]]:
    conn = await asyncpg.connect(source.database_url)
    try:
        rows = await conn.fetch("SELECT resource_type, id FROM resource WHERE NOT deleted")
    finally:
        await conn.close()
    return {(row["resource_type"], row["id"]) for row in rows}


async def test_a_system_export_round_trips_into_an_empty_server(
    fhir: httpx.AsyncClient, source: Source, database_url: str, tmp_path: Path
) -> None:
    manifest, exported = await flow.export(fhir, "$export")
    assert {key(r) for r in exported} == await stored_keys(source)
    assert len(exported) == len({key(r) for r in exported})
    target_url = await create_database(database_url, "export_target")
    with running(export_config(tmp_path), target_url) as target:
        async with client_of(target) as client:
            lines = []
            for item in manifest["output"]:
                response = await fhir.get(item["url"])
                lines += [read_json(line) for line in response.text.splitlines()]
            await put_all(client, lines)
            count = await client.get("", params={"_summary": "count"})
            assert count.json()["total"] == len(exported)
            for resource in lines:
                url = f"{resource['resourceType']}/{resource['id']}"
                copied, original = await client.get(url), await fhir.get(url)
                assert copied.status_code == original.status_code == 200
                assert without_version(read_json(copied.content)) == without_version(
                    read_json(original.content)
                )
                # Decimals keep their digits on the way out and back in.
                assert dump_json(without_version(read_json(copied.content))) == dump_json(
                    without_version(resource)
                )


async def test_the_manifest_lists_every_file_with_its_type_and_count(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    started = datetime.now(UTC)
    status = await flow.kick_off(fhir, "$export", {"_type": "Patient,Observation"})
    assert status.startswith(source.base_url + "/$export/")
    manifest = await flow.manifest(fhir, status)
    assert manifest["request"] == f"{source.base_url}/$export?_type=Patient%2CObservation"
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    assert "deleted" not in manifest
    transaction_time = datetime.fromisoformat(manifest["transactionTime"])
    assert started <= transaction_time <= datetime.now(UTC)
    assert {item["type"] for item in manifest["output"]} == {"Patient", "Observation"}
    observations = [i for i in manifest["output"] if i["type"] == "Observation"]
    # Split at the configured size, every file within it.
    assert len(observations) > 1
    for item in manifest["output"]:
        response = await fhir.get(item["url"])
        assert 0 < len(response.content) <= MAX_FILE_BYTES
        assert response.content.endswith(b"\n")
        assert response.content.count(b"\n") == item["count"]
    dataset = source.of_type("Observation")
    assert sum(i["count"] for i in observations) >= len(dataset)


async def test_a_patient_level_export_holds_every_patients_data(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    _, exported = await flow.export(fhir, "Patient/$export")
    found = {key(r) for r in exported}
    dataset = set(source.dataset)
    expected = set().union(*(p.keys for p in every_patient()))
    assert expected <= found
    # Of the data set, nothing else: no resource that no patient's data refers to.
    assert found & dataset == expected


async def test_a_group_export_holds_its_members_data_only(fhir: httpx.AsyncClient) -> None:
    members = every_patient()[3:5]
    group = {
        "resourceType": "Group",
        "id": f"g-{uuid.uuid4()}",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{p.patient}"}} for p in members],
    }
    assert (await fhir.put(f"Group/{group['id']}", json=group)).status_code == 201
    _, exported = await flow.export(fhir, f"Group/{group['id']}/$export")
    # The Group is in its members' compartments too (it refers to them through `member`).
    expected = members[0].keys | members[1].keys | {("Group", group["id"])}
    assert {key(r) for r in exported} == expected
    _, exported = await flow.export(
        fhir, f"Group/{group['id']}/$export", {"_type": "Patient,Practitioner"}
    )
    wanted = {k for k in members[0].keys | members[1].keys if k[0] in ("Patient", "Practitioner")}
    assert {key(r) for r in exported} == wanted


async def test_a_post_kick_off_takes_a_parameters_body_with_patients(
    fhir: httpx.AsyncClient,
) -> None:
    patient = every_patient()[6]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,Encounter"},
            {"name": "patient", "valueReference": {"reference": f"Patient/{patient.patient}"}},
        ],
    }
    response = await fhir.post("Patient/$export", json=body, headers=flow.ASYNC)
    assert response.status_code == 202, response.text
    manifest = await flow.manifest(fhir, response.headers["content-location"])
    exported = await flow.resources(fhir, manifest)
    assert {key(r) for r in exported} == {
        k for k in patient.keys if k[0] in ("Patient", "Encounter")
    }
    assert manifest["request"].endswith("/Patient/$export")


async def test_type_filter_narrows_its_type_only(fhir: httpx.AsyncClient, source: Source) -> None:
    code = "http://loinc.org|8302-2"
    _, exported = await flow.export(
        fhir,
        "$export",
        {"_type": "Patient,Observation", "_typeFilter": f"Observation?code={code}"},
    )
    observations = [r for r in exported if r["resourceType"] == "Observation"]
    expected = {
        r["id"]
        for r in source.of_type("Observation")
        if any(c["code"] == "8302-2" for c in r["code"]["coding"])
    }
    assert {r["id"] for r in observations} == expected
    assert {r["id"] for r in source.of_type("Patient")} <= {
        r["id"] for r in exported if r["resourceType"] == "Patient"
    }


async def test_type_filters_of_one_type_are_ored(fhir: httpx.AsyncClient) -> None:
    params = [
        ("_type", "Observation"),
        ("_typeFilter", "Observation?code=http://loinc.org|8302-2,Observation?code=29463-7"),
    ]
    _, exported = await flow.export(fhir, "$export", params)
    codes = {c["code"] for r in exported for c in r["code"]["coding"]}
    assert codes == {"8302-2", "29463-7"}


async def test_since_exports_what_changed_and_lists_what_was_deleted(
    fhir: httpx.AsyncClient,
) -> None:
    tag = uuid.uuid4().hex
    kept, gone = f"since-{tag}-kept", f"since-{tag}-gone"
    for id in (kept, gone):
        body = {"resourceType": "Basic", "id": id, "code": {"text": "före"}}
        assert (await fhir.put(f"Basic/{id}", json=body)).status_code == 201
    since = datetime.now(UTC)
    changed = {"resourceType": "Basic", "id": kept, "code": {"text": "efter"}}
    assert (await fhir.put(f"Basic/{kept}", json=changed)).status_code == 200
    assert (await fhir.delete(f"Basic/{gone}")).status_code == 204
    instant = since.isoformat().replace("+00:00", "Z")
    manifest, exported = await flow.export(fhir, "$export", {"_since": instant})
    assert [key(r) for r in exported] == [("Basic", kept)]
    assert exported[0]["code"]["text"] == "efter"
    assert [item["type"] for item in manifest["deleted"]] == ["Bundle"]
    bundles = await flow.lines(fhir, manifest["deleted"][0]["url"])
    entries = [e["request"] for b in bundles for e in b["entry"]]
    assert bundles[0]["type"] == "transaction"
    assert entries == [{"method": "DELETE", "url": f"Basic/{gone}"}]


async def test_unsupported_parameters_pass_under_lenient_handling_into_the_error_file(
    fhir: httpx.AsyncClient,
) -> None:
    status = await flow.kick_off(
        fhir,
        "$export",
        {"_type": "Patient,Nonsense", "_elements": "id"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    manifest = await flow.manifest(fhir, status)
    assert {i["type"] for i in manifest["output"]} == {"Patient"}
    assert [i["type"] for i in manifest["error"]] == ["OperationOutcome"]
    outcomes = await flow.lines(fhir, manifest["error"][0]["url"])
    found = " ".join(o["issue"][0]["diagnostics"] for o in outcomes)
    assert "Nonsense" in found
    assert "_elements" in found


@pytest.mark.parametrize(
    ("path", "params", "headers", "status"),
    [
        ("$export", {}, {"Prefer": ""}, 400),
        ("$export", {"_outputFormat": "text/csv"}, {}, 400),
        ("$export", {"_outputFormat": "application/fhir+json"}, {}, 400),
        ("$export", {"_since": "last tuesday"}, {}, 400),
        ("$export", {"_since": "2024-13-01"}, {}, 400),
        ("$export", {"_type": "Nonsense"}, {}, 400),
        ("$export", {"_elements": "id"}, {}, 400),
        ("$export", {"_typeFilter": "Observation?nonsense=1"}, {}, 400),
        ("$export", {"_typeFilter": "Observation?code=x&_sort=date"}, {}, 400),
        ("$export", {"_typeFilter": "code=x"}, {}, 400),
        ("$export", {"_typeFilter": "Observation?date=yesterday"}, {}, 400),
        ("$export", {"bogus": "1"}, {}, 400),
        ("Patient/$export", {"_type": "Organization,Library"}, {}, 400),
        ("Group/no-such-group/$export", {}, {}, 404),
        ("$export", {}, {"Accept": "application/fhir+xml"}, 406),
    ],
)
async def test_a_bad_kick_off_is_refused(
    fhir: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    status: int,
) -> None:
    response = await fhir.get(path, params=params or None, headers={**flow.ASYNC, **headers})
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_patients_outside_the_group_are_refused(fhir: httpx.AsyncClient) -> None:
    inside, outside = every_patient()[0].patient, every_patient()[1].patient
    group = {
        "resourceType": "Group",
        "id": f"g-{uuid.uuid4()}",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{inside}"}}],
    }
    assert (await fhir.put(f"Group/{group['id']}", json=group)).status_code == 201
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{outside}"}}],
    }
    response = await fhir.post(f"Group/{group['id']}/$export", json=body, headers=flow.ASYNC)
    assert response.status_code == 400
    assert outside in response.text


async def test_the_status_of_an_unknown_export_is_not_found(fhir: httpx.AsyncClient) -> None:
    for job in (str(uuid.uuid4()), "not-a-job"):
        response = await fhir.get(f"$export/{job}")
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"
        assert (await fhir.delete(f"$export/{job}")).status_code == 404
        assert (await fhir.get(f"$export/{job}/Patient-1.ndjson")).status_code == 404


async def test_a_cancelled_export_and_its_files_are_gone(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    status = await flow.kick_off(fhir, "$export", {"_type": "Patient"})
    manifest = await flow.manifest(fhir, status)
    url = manifest["output"][0]["url"]
    assert (await fhir.get(url)).status_code == 200
    job = status.rsplit("/", 1)[1]
    assert (source.export_dir / job).is_dir()
    cancelled = await fhir.delete(status)
    assert cancelled.status_code == 202
    assert (await fhir.get(status)).status_code == 404
    assert (await fhir.get(url)).status_code == 404
    assert (await fhir.delete(status)).status_code == 404
    assert not (source.export_dir / job).exists()


async def test_a_running_export_can_be_cancelled(fhir: httpx.AsyncClient) -> None:
    status = await flow.kick_off(fhir, "$export")
    assert (await fhir.delete(status)).status_code == 202
    assert (await fhir.get(status)).status_code == 404


async def test_expired_exports_and_their_files_are_gone(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    status = await flow.kick_off(fhir, "$export", {"_type": "Patient"})
    manifest = await flow.manifest(fhir, status)
    url, job = manifest["output"][0]["url"], uuid.UUID(status.rsplit("/", 1)[1])
    pool = await asyncpg.create_pool(source.database_url, min_size=1, max_size=2)
    try:
        await pool.execute(
            "UPDATE export_job SET expires = $2 WHERE id = $1",
            job,
            datetime.now(UTC) - timedelta(seconds=1),
        )
        assert (await fhir.get(status)).status_code == 404
        assert (await fhir.get(url)).status_code == 404
        # The clean-up every server runs once a minute removes the files.
        assert (source.export_dir / str(job)).is_dir()
        definitions = Definitions.load()
        compiler = SearchCompiler(SearchParameters.load(definitions), definitions.resource_types)
        exporter = Exporter(
            pool, compiler, source.export_dir, max_file_bytes=1, expiry=timedelta(hours=1)
        )
        assert await exporter.cleanup() >= 1
        assert not (source.export_dir / str(job)).exists()
        assert await pool.fetchval("SELECT status FROM export_job WHERE id = $1", job) == "expired"
    finally:
        await pool.close()


async def test_exports_are_listed_in_the_capability_statement(fhir: httpx.AsyncClient) -> None:
    statement = (await fhir.get("metadata")).json()
    operations = {o["name"]: o["definition"] for o in statement["rest"][0]["operation"]}
    base = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
    assert operations["export"] == f"{base}/export"
    assert operations["patient-export"] == f"{base}/patient-export"
    assert operations["group-export"] == f"{base}/group-export"
    assert operations["everything"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"


async def test_an_export_holds_only_what_the_token_may_read(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    headers = source.token_for(["system/Patient.rs", "system/Encounter.rs"], "analytics")
    response = await fhir.get("$export", headers={**flow.ASYNC, **headers})
    assert response.status_code == 202, response.text
    status = response.headers["content-location"]
    finished = await flow.finished(httpx_with(fhir, headers), status)
    manifest = finished.json()
    assert {item["type"] for item in manifest["output"]} == {"Patient", "Encounter"}
    # A type named in _type that the token may not read is refused.
    refused = await fhir.get(
        "$export", params={"_type": "Observation"}, headers={**flow.ASYNC, **headers}
    )
    assert refused.status_code == 403
    # Only the client that started an export sees it.
    other = source.token_for(["system/Patient.rs"], "someone-else")
    assert (await fhir.get(status, headers=other)).status_code == 404
    assert (await fhir.delete(status, headers=other)).status_code == 404
    assert (await fhir.get(status, headers=headers)).status_code == 200


async def test_a_patient_token_exports_its_patients_compartment_only(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    mine = every_patient()[2]
    headers = source.token_for(["patient/*.rs"], "portal", {"patient": mine.patient})
    response = await fhir.get("Patient/$export", headers={**flow.ASYNC, **headers})
    assert response.status_code == 202, response.text
    client = httpx_with(fhir, headers)
    manifest = (await flow.finished(client, response.headers["content-location"])).json()
    exported = await flow.resources(client, manifest)
    assert {key(r) for r in exported} == set(mine.compartment)


def httpx_with(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.AsyncClient:
    """The client, sending these headers from now on."""
    client.headers.update(headers)
    return client


async def test_export_files_are_served_only_to_the_client_that_started_the_export(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    status = await flow.kick_off(fhir, "$export", {"_type": "Patient"})
    manifest = await flow.manifest(fhir, status)
    url = manifest["output"][0]["url"]
    async with httpx.AsyncClient(timeout=30) as anonymous:
        refused = await anonymous.get(url)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        other = source.token_for(["system/*.rs"], "another-module")
        hidden = await anonymous.get(url, headers=other)
        assert hidden.status_code == 404
        served = await anonymous.get(url, headers=source.auth)
        assert served.status_code == 200
