"""`$import` of real data: an export imported back into its server after the data was deleted
(the token sent along only to the server's own files), an export imported into a fresh server,
"ping and pull" from an export server, and Synthea's Bulk Data NDJSON with conditional
references between its files."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.synthea import read_json

from . import flow
from .conftest import Served, Source, client_of, create_database, export_config, running
from .importing import errors, file_server, kick_off, ndjson, parameters, result, run
from .synthea import BUNDLES, bundle_resources, put_all
from .test_export import without_version

NDJSON_DATA = Path(__file__).resolve().parents[1] / "data" / "ndjson"


@pytest.fixture
async def fresh(database_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    """A server of its own on an empty database."""
    url = await create_database(database_url, "import_target")
    with running(export_config(tmp_path), url) as served:
        yield served


async def test_an_export_imported_after_its_data_was_deleted_restores_every_resource(
    fresh: Served,
) -> None:
    resources = bundle_resources(BUNDLES[0])
    # The types written here: the server's own resources (its SubscriptionTopics) stay out.
    types = ",".join(sorted({r["resourceType"] for r in resources}))
    async with client_of(fresh) as client:
        await put_all(client, resources)
        manifest, exported = await flow.export(client, "$export", {"_type": types})
        assert len(exported) == len(resources)
        for resource in resources:
            url = f"{resource['resourceType']}/{resource['id']}"
            assert (await client.delete(url)).status_code == 204
        # The export manifest itself as the kick-off: its files are on this server, so the
        # kick-off's token is sent to fetch them.
        found = await run(client, manifest)
        assert sum(o["count"] for o in found["output"]) == len(resources)
        assert found["error"] == []
        for resource in resources:
            got = await client.get(f"{resource['resourceType']}/{resource['id']}")
            assert got.status_code == 200
            assert without_version(read_json(got.content)) == without_version(resource)
            assert got.json()["meta"]["versionId"] == "3"  # created, deleted, imported
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        everything = await client.get(f"Patient/{patient['id']}/$everything?_count=1000")
        assert everything.json()["total"] >= len(resources) - 10


async def test_a_ping_and_pull_of_its_own_export_sends_the_token_only_to_its_own_origin(
    fresh: Served,
) -> None:
    resources = [r for r in bundle_resources(BUNDLES[1]) if r["resourceType"] == "Patient"]
    async with client_of(fresh) as client:
        await put_all(client, resources)
        with file_server() as files:
            files.add("Observation.ndjson", b"")
            status_url = await kick_off(
                client, {"exportUrl": f"{fresh.base_url}/$export", "_type": "Patient"}
            )
            found = await result(client, status_url)
            assert {o["type"] for o in found["output"]} == {"Patient"}
            assert sum(o["count"] for o in found["output"]) == len(resources)
            # With the exported files on another host, no token leaves the server.
            external = await run(
                client,
                {
                    "output": [
                        {"type": "Observation", "url": f"{files.base}/files/Observation.ndjson"}
                    ]
                },
            )
            assert external["output"][0]["count"] == 0
            (asked,) = [a for a in files.asked if a[1].endswith("Observation.ndjson")]
            assert "authorization" not in asked[2]
        got = await client.get(f"Patient/{resources[0]['id']}")
        assert got.json()["meta"]["versionId"] == "2"


async def test_an_export_imported_into_a_fresh_server_holds_the_same_resources(
    fhir: httpx.AsyncClient, source: Source, fresh: Served
) -> None:
    manifest, exported = await flow.export(fhir, "$export")
    with file_server() as files:
        # The exported files, served from elsewhere (the fresh server has no token for the
        # source): the import-manifest form of the kick-off.
        inputs, lines = [], []
        for n, item in enumerate(manifest["output"]):
            content = (await fhir.get(item["url"])).content
            inputs.append({"type": item["type"], "url": files.add(f"{n}.ndjson", content)})
            lines += [read_json(line) for line in content.splitlines()]
        async with client_of(fresh) as client:
            body: dict[str, Any] = {
                "inputFormat": "application/fhir+ndjson",
                "inputSource": source.base_url,
                "storageDetail": {"type": "https"},
                "input": inputs,
            }
            found = await run(client, body)
            assert found["inputSource"] == source.base_url
            assert found["error"] == []
            assert sum(o["count"] for o in found["output"]) == len(exported)
            count = await client.get("", params={"_summary": "count"})
            assert count.json()["total"] == len(exported)
            for resource in lines[:: max(1, len(lines) // 200)]:
                got = await client.get(f"{resource['resourceType']}/{resource['id']}")
                assert without_version(read_json(got.content)) == without_version(resource)


async def test_a_ping_and_pull_kick_off_pulls_the_export_it_names(fresh: Served) -> None:
    tag = "pnp"
    patient = {"resourceType": "Patient", "id": f"{tag}-1", "gender": "male"}
    with file_server() as files:
        files.add("Patient.ndjson", ndjson([patient]))
        async with client_of(fresh) as client:
            body = {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "exportUrl", "valueUrl": f"{files.base}/export"},
                    {"name": "_type", "valueString": "Patient"},
                ],
            }
            status_url = await kick_off(client, body)
            progress = await client.get(status_url)
            assert progress.status_code == 202
            found = await result(client, status_url)
            assert found["output"] == [
                {"type": "Patient", "url": f"{files.base}/files/Patient.ndjson", "count": 1}
            ]
            # The export kick-off got the parameters, and was polled until complete.
            assert files.export_parameters == [
                {"resourceType": "Parameters", "parameter": [body["parameter"][1]]}
            ]
            assert [a[1] for a in files.asked].count("/status") == 2
            assert (await client.get(f"Patient/{tag}-1")).status_code == 200
            static = await run(
                client, {"exportUrl": f"{files.base}/manifest.json", "exportType": "static"}
            )
            assert static["output"][0]["count"] == 1


async def test_an_input_waits_for_the_inputs_that_hold_what_its_conditional_references_name(
    fresh: Served,
) -> None:
    with file_server() as files:
        urls = {
            name: files.add(name, (NDJSON_DATA / name).read_bytes())
            for name in (
                "Immunization.000.ndjson.gz",
                "Patient.000.ndjson.gz",
                "Location.000.ndjson.gz",
            )
        }
        async with client_of(fresh) as client:
            body = parameters([(name.split(".")[0], url) for name, url in urls.items()])
            found = await run(client, body)
            assert [o["count"] for o in found["output"]] == [161, 13, 44]
            assert found["error"] == []
            search = await client.get("Immunization", params={"_count": "1"})
            immunization = search.json()["entry"][0]["resource"]
            location = immunization["location"]["reference"]
            assert location.startswith("Location/")
            assert (await client.get(location)).status_code == 200


async def test_a_conditional_reference_that_matches_nothing_is_reported_for_its_line(
    fresh: Served,
) -> None:
    with file_server() as files:
        url = files.add(
            "Immunization.ndjson.gz", (NDJSON_DATA / "Immunization.000.ndjson.gz").read_bytes()
        )
        async with client_of(fresh) as client:
            found = await run(client, parameters([("Immunization", url)]))
            assert found["output"][0]["count"] == 0
            outcomes = await errors(client, found)
            assert len(outcomes) == 161
            assert "matches no resource" in outcomes[0]["issue"][0]["diagnostics"]
            assert outcomes[0]["issue"][0]["diagnostics"].startswith("line 1 (Immunization/")
