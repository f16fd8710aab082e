"""transaction (https://hl7.org/fhir/R4/http.html#transaction, #trules): a Bundle POSTed to the
base, processed all or nothing, placeholders and conditional references resolved."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

IN_REPO = Path(__file__).resolve().parents[1] / "data" / "synthea"
SMALLEST = IN_REPO / "Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json.gz"
SHARED = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "synthea").resolve()


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def patient(system: str, value: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": system, "value": value}], **extra}


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        **extra,
    }


def entry(
    method: str, url: str, resource: Any = None, full_url: str | None = None, **request: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if full_url is not None:
        out["fullUrl"] = full_url
    if resource is not None:
        out["resource"] = resource
    out["request"] = {"method": method, "url": url, **request}
    return out


async def post_bundle(
    client: httpx.AsyncClient,
    entries: list[dict[str, Any]],
    kind: str = "transaction",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "", json={"resourceType": "Bundle", "type": kind, "entry": entries}, headers=headers
    )


async def committed(
    client: httpx.AsyncClient, entries: list[dict[str, Any]], **kw: Any
) -> list[dict[str, Any]]:
    response = await post_bundle(client, entries, **kw)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "transaction-response"
    result: list[dict[str, Any]] = body["entry"]
    assert len(result) == len(entries)
    return result


async def read(client: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """The current resource a `Type/id/_history/n` location names."""
    response = await client.get(location.split("/_history")[0])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def created(client: httpx.AsyncClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def ids_in(client: httpx.AsyncClient, system: str) -> set[str]:
    response = await client.get("Patient", params={"identifier": f"{system}|", "_count": "100"})
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def failure(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


# --- the response --------------------------------------------------------------------------------


async def test_a_transaction_answers_each_entry_in_request_order_with_status_location_and_etag(
    client: httpx.AsyncClient,
) -> None:
    system, subject = urn(), urn()
    result = await committed(
        client,
        [
            entry("POST", "Observation", observation(subject)),
            entry("POST", "Patient", patient(system, "1"), subject),
        ],
    )
    for item, kind in zip(result, ["Observation", "Patient"], strict=True):
        response = item["response"]
        assert response["status"] == "201 Created"
        type_, id, history, version = response["location"].split("/")
        assert (type_, history, version) == (kind, "_history", "1")
        assert response["etag"] == 'W/"1"'
        assert response["lastModified"] == item["resource"]["meta"]["lastUpdated"]
        assert item["resource"]["id"] == id
        assert item["fullUrl"].endswith(f"/{kind}/{id}")


async def test_prefer_return_minimal_leaves_out_the_resources_and_operation_outcome_explains(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    (minimal,) = await committed(
        client,
        [entry("POST", "Patient", patient(system, "1"))],
        headers={"Prefer": "return=minimal"},
    )
    assert "resource" not in minimal
    assert minimal["response"]["status"] == "201 Created"
    (explained,) = await committed(
        client,
        [entry("POST", "Patient", patient(system, "2"))],
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert "resource" not in explained
    assert explained["response"]["outcome"]["resourceType"] == "OperationOutcome"


async def test_the_base_url_answers_with_and_without_a_trailing_slash(
    client: httpx.AsyncClient,
) -> None:
    body = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    base = str(client.base_url).rstrip("/")
    for url in (base, base + "/"):
        response = await client.post(url, json=body)
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "transaction-response"
        search = await client.get(url, params={"_type": "Patient", "_count": 1})
        assert search.status_code == 200, search.text
        assert search.json()["type"] == "searchset"


# --- references ----------------------------------------------------------------------------------


async def test_placeholders_are_rewritten_at_any_depth_in_every_entry(
    client: httpx.AsyncClient,
) -> None:
    system, p = urn(), urn()
    practitioner = f"urn:oid:1.2.752.{uuid.uuid4().int % 10**12}"
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": p},
        "participant": [{"individual": {"reference": practitioner}}],
        "extension": [
            {"url": "http://example.org/seen-by", "valueReference": {"reference": practitioner}},
            {
                "url": "http://example.org/nested",
                "extension": [{"url": "who", "valueReference": {"reference": p}}],
            },
        ],
        "contained": [observation(p, id="o1")],
        "reasonReference": [{"reference": "#o1"}],
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{p}">the patient</a></div>',
        },
    }
    result = await committed(
        client,
        [
            entry("POST", "Encounter", encounter),
            entry("POST", "Patient", patient(system, "1"), p),
            entry("POST", "Practitioner", {"resourceType": "Practitioner"}, practitioner),
        ],
    )
    stored = await read(client, result[0]["response"]["location"])
    patient_ref = "Patient/" + result[1]["resource"]["id"]
    practitioner_ref = "Practitioner/" + result[2]["resource"]["id"]
    assert stored["subject"]["reference"] == patient_ref
    assert stored["participant"][0]["individual"]["reference"] == practitioner_ref
    assert stored["extension"][0]["valueReference"]["reference"] == practitioner_ref
    assert stored["extension"][1]["extension"][0]["valueReference"]["reference"] == patient_ref
    assert stored["contained"][0]["subject"]["reference"] == patient_ref
    assert stored["reasonReference"][0]["reference"] == "#o1"
    assert f'href="{patient_ref}"' in stored["text"]["div"]
    # The index rows hold the rewritten reference too.
    found = await client.get("Encounter", params={"subject": patient_ref})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [stored["id"]]


async def test_placeholders_in_the_urls_of_other_entries_are_rewritten(
    client: httpx.AsyncClient,
) -> None:
    system, p = urn(), urn()
    result = await committed(
        client,
        [
            entry("GET", f"Observation?subject={p}"),
            entry("POST", "Patient", patient(system, "1"), p),
            entry("POST", "Observation", observation(p)),
        ],
    )
    searchset = result[0]["resource"]
    assert searchset["type"] == "searchset"
    # The search ran after the writes, in the transaction, with the placeholder rewritten.
    assert [e["resource"]["id"] for e in searchset["entry"]] == [result[2]["resource"]["id"]]


async def test_a_placeholder_that_names_no_entry_fails_the_transaction(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    response = await post_bundle(
        client,
        [
            entry("POST", "Patient", patient(system, "1")),
            entry("POST", "Observation", observation(urn())),
        ],
    )
    outcome = failure(response, 400)
    assert outcome["issue"][0]["expression"][0] == "Bundle.entry[1]"
    assert await ids_in(client, system) == set()


async def test_a_conditional_reference_matching_one_resource_is_rewritten_to_it(
    client: httpx.AsyncClient,
) -> None:
    system, value = urn(), str(uuid.uuid4())
    existing = await created(client, patient(system, value))
    (result,) = await committed(
        client, [entry("POST", "Observation", observation(f"Patient?identifier={system}|{value}"))]
    )
    stored = await read(client, result["response"]["location"])
    assert stored["subject"]["reference"] == f"Patient/{existing['id']}"


@pytest.mark.parametrize("matches", [0, 2])
async def test_a_conditional_reference_matching_none_or_several_fails_with_412(
    client: httpx.AsyncClient, matches: int
) -> None:
    system, value = urn(), str(uuid.uuid4())
    for _ in range(matches):
        await created(client, patient(system, value))
    bystander = urn()
    response = await post_bundle(
        client,
        [
            entry("POST", "Patient", patient(bystander, "1")),
            entry("POST", "Observation", observation(f"Patient?identifier={system}|{value}")),
        ],
    )
    outcome = failure(response, 412)
    assert "Bundle.entry[1]" in outcome["issue"][0]["diagnostics"]
    assert await ids_in(client, bystander) == set()


# --- processing order and conditional interactions ----------------------------------------------


async def test_entries_are_processed_delete_then_post_then_put_and_patch_then_get(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    kept = await created(client, patient(system, "kept"))
    patched = await created(client, patient(system, "patched"))
    doomed = await created(client, patient(system, "doomed"))
    operations = [{"op": "add", "path": "/active", "value": True}]
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(json.dumps(operations).encode()).decode(),
    }
    result = await committed(
        client,
        [
            # Runs last: it sees every write of the transaction.
            entry("GET", f"Patient?identifier={system}|"),
            entry("PATCH", f"Patient/{patched['id']}", binary),
            entry("PUT", f"Patient/{kept['id']}", {**kept, "gender": "female"}),
            # Runs after the delete: nothing matches the deleted resource any more.
            entry(
                "POST",
                "Patient",
                patient(system, "doomed"),
                ifNoneExist=f"identifier={system}|doomed",
            ),
            entry("DELETE", f"Patient/{doomed['id']}"),
        ],
    )
    assert [r["response"]["status"] for r in result] == [
        "200 OK",
        "200 OK",
        "200 OK",
        "201 Created",
        "204 No Content",
    ]
    recreated = result[3]["resource"]["id"]
    assert recreated != doomed["id"]
    found = {e["resource"]["id"]: e["resource"] for e in result[0]["resource"]["entry"]}
    assert set(found) == {kept["id"], patched["id"], recreated}
    assert found[kept["id"]]["gender"] == "female"
    assert found[patched["id"]]["active"] is True


async def test_two_entries_touching_one_resource_fail_the_transaction_with_400(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    existing = await created(client, patient(system, "1"))
    for entries in (
        [
            entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
            entry("DELETE", f"Patient/{existing['id']}"),
        ],
        [
            entry("PUT", f"Patient/{existing['id']}", {**existing, "gender": "male"}),
            entry("PUT", f"Patient?identifier={system}|1", patient(system, "1")),
        ],
    ):
        failure(await post_bundle(client, entries), 400)
    assert (await client.get(f"Patient/{existing['id']}")).json() == existing


async def test_a_conditional_create_that_matches_answers_200_and_its_references_point_to_the_match(
    client: httpx.AsyncClient,
) -> None:
    system, p = urn(), urn()
    existing = await created(client, patient(system, "1"))
    result = await committed(
        client,
        [
            entry("POST", "Patient", patient(system, "1"), p, ifNoneExist=f"identifier={system}|1"),
            entry("POST", "Observation", observation(p)),
        ],
    )
    assert result[0]["response"]["status"] == "200 OK"
    assert result[0]["resource"]["id"] == existing["id"]
    assert result[1]["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert await ids_in(client, system) == {existing["id"]}


async def test_a_conditional_update_updates_the_match_or_creates_and_references_follow(
    client: httpx.AsyncClient,
) -> None:
    system, matched, fresh = urn(), urn(), urn()
    existing = await created(client, patient(system, "1"))
    result = await committed(
        client,
        [
            entry(
                "PUT",
                f"Patient?identifier={system}|1",
                patient(system, "1", gender="other"),
                matched,
            ),
            entry("PUT", f"Patient?identifier={system}|2", patient(system, "2"), fresh),
            entry("POST", "Observation", observation(matched)),
            entry("POST", "Observation", observation(fresh)),
        ],
    )
    assert result[0]["response"]["status"] == "200 OK"
    assert result[0]["response"]["location"] == f"Patient/{existing['id']}/_history/2"
    assert result[1]["response"]["status"] == "201 Created"
    created_id = result[1]["resource"]["id"]
    assert result[2]["resource"]["subject"]["reference"] == f"Patient/{existing['id']}"
    assert result[3]["resource"]["subject"]["reference"] == f"Patient/{created_id}"
    assert await ids_in(client, system) == {existing["id"], created_id}


async def test_a_conditional_delete_deletes_its_one_match_inside_the_transaction(
    client: httpx.AsyncClient,
) -> None:
    system = urn()
    doomed = await created(client, patient(system, "1"))
    result = await committed(
        client,
        [
            entry("DELETE", f"Patient?identifier={system}|1"),
            entry("DELETE", f"Patient?identifier={system}|nothing"),
        ],
    )
    assert [r["response"]["status"] for r in result] == ["204 No Content", "204 No Content"]
    assert result[0]["response"]["etag"] == 'W/"2"'
    assert (await client.get(f"Patient/{doomed['id']}")).status_code == 410


async def test_get_entries_read_vread_and_honour_if_none_match(client: httpx.AsyncClient) -> None:
    existing = await created(client, patient(urn(), "1"))
    name = f"Patient/{existing['id']}"
    result = await committed(
        client,
        [
            entry("GET", name),
            entry("GET", f"{name}/_history/1"),
            entry("GET", name, ifNoneMatch='W/"1"'),
            entry("GET", f"{name}/_history"),
        ],
    )
    assert result[0]["resource"] == existing
    assert result[1]["resource"] == existing
    assert result[2]["response"]["status"] == "304 Not Modified"
    assert "resource" not in result[2]
    assert result[3]["resource"]["type"] == "history"


async def test_a_search_entry_pages_like_a_search(client: httpx.AsyncClient) -> None:
    system = urn()
    for value in ("1", "2", "3"):
        await created(client, patient(system, value))
    (result,) = await committed(client, [entry("GET", f"Patient?identifier={system}|&_count=2")])
    searchset = result["resource"]
    assert len(searchset["entry"]) == 2
    assert searchset["total"] == 3
    (next_page,) = [link["url"] for link in searchset["link"] if link["relation"] == "next"]
    rest = await client.get(next_page)
    assert rest.status_code == 200, rest.text
    assert [e["search"]["mode"] for e in rest.json()["entry"]].count("match") == 1


# --- all or nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failing", "status"),
    [
        (entry("POST", "Patient", {"resourceType": "Patient", "gender": 7}), 422),
        (entry("DELETE", f"Patient/{uuid.uuid4()}"), 404),
        (entry("PUT", "Patient/x1", {"resourceType": "Patient", "id": "x1"}, ifMatch='W/"9"'), 412),
        (entry("GET", f"Patient/{uuid.uuid4()}"), 404),
        (entry("POST", "NoSuchType", {"resourceType": "NoSuchType"}), 404),
    ],
)
async def test_one_failing_entry_rolls_back_every_entry(
    client: httpx.AsyncClient, failing: dict[str, Any], status: int
) -> None:
    system, p, full_url = urn(), urn(), urn()
    existing = await created(client, patient(system, "existing"))
    other = await created(client, patient(system, "other"))
    response = await post_bundle(
        client,
        [
            entry("POST", "Patient", patient(system, "new"), p),
            entry("PUT", f"Patient/{other['id']}", {**other, "gender": "male"}),
            entry("DELETE", f"Patient?identifier={system}|existing"),
            {"fullUrl": full_url, **failing},
            entry("POST", "Observation", observation(p)),
        ],
    )
    outcome = failure(response, status)
    (issue, *_) = outcome["issue"]
    assert issue["expression"][0] == "Bundle.entry[3]"
    assert full_url in issue["diagnostics"]
    assert failing["request"]["url"] in issue["diagnostics"]
    # Nothing was written: the existing resources are unchanged and nothing new exists.
    assert await ids_in(client, system) == {existing["id"], other["id"]}
    assert (await client.get(f"Patient/{existing['id']}")).json() == existing
    assert (await client.get(f"Patient/{other['id']}")).json() == other


@pytest.mark.parametrize(
    ("bundle", "status"),
    [
        ({"resourceType": "Patient"}, 400),
        ({"resourceType": "Bundle", "type": "collection"}, 400),
        ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, 400),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [{}]}, 400),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [7]}, 400),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [entry("GET", "")]}, 400),
        (
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry("FETCH", "Patient")]},
            400,
        ),
        (
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry("POST", "Patient")]},
            400,
        ),
        (
            {"resourceType": "Bundle", "type": "transaction", "entry": [entry("PUT", "Patient/1")]},
            400,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [entry("POST", "Patient/1", {"resourceType": "Patient"})],
            },
            400,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [entry("PUT", "Patient/1", {"resourceType": "Patient", "id": "2"})],
            },
            400,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [entry("POST", "Patient", {"resourceType": "Observation"})],
            },
            400,
        ),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [entry("PATCH", "Patient/1", {"resourceType": "Parameters"})],
            },
            400,
        ),
    ],
)
async def test_a_malformed_bundle_is_refused_with_an_operation_outcome(
    client: httpx.AsyncClient, bundle: dict[str, Any], status: int
) -> None:
    outcome = failure(await client.post("", json=bundle), status)
    assert outcome["issue"][0]["diagnostics"]


async def test_an_empty_transaction_answers_an_empty_transaction_response(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("", json={"resourceType": "Bundle", "type": "transaction"})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert "entry" not in response.json()


# --- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_transactions_with_if_match_never_lose_an_update(
    client: httpx.AsyncClient,
) -> None:
    """Each writer reads the counter, then writes counter + 1 with If-Match; a stale writer
    gets 412 and tries again. No increment may be lost."""
    counter = await created(client, {"resourceType": "Patient", "multipleBirthInteger": 0})
    name = f"Patient/{counter['id']}"
    writers, conflicts = 6, 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            current = (await client.get(name)).json()
            version = current["meta"]["versionId"]
            current["multipleBirthInteger"] += 1
            response = await post_bundle(
                client, [entry("PUT", name, current, ifMatch=f'W/"{version}"')]
            )
            if response.status_code == 200:
                return
            assert response.status_code == 412, response.text
            conflicts += 1

    await asyncio.gather(*[increment() for _ in range(writers)])
    final = (await client.get(name)).json()
    assert final["multipleBirthInteger"] == writers
    assert final["meta"]["versionId"] == str(writers + 1)


async def test_concurrent_transactions_locking_in_opposite_orders_all_commit(
    client: httpx.AsyncClient,
) -> None:
    """Two resources updated in opposite orders deadlock in PostgreSQL; the loser is run again,
    so every transaction commits and every version is kept."""
    first = await created(client, {"resourceType": "Patient"})
    second = await created(client, {"resourceType": "Patient"})
    rounds = 4

    def bundle(order: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        return [
            entry(
                "PUT",
                f"Patient/{r['id']}",
                {"resourceType": "Patient", "id": r["id"], "multipleBirthInteger": n},
            )
            for r in order
        ]

    responses = await asyncio.gather(
        *[
            post_bundle(client, bundle([first, second] if n % 2 else [second, first], n))
            for n in range(rounds)
        ]
    )
    assert [r.status_code for r in responses] == [200] * rounds, [r.text for r in responses]
    for resource in (first, second):
        history = await client.get(f"Patient/{resource['id']}/_history", params={"_count": "100"})
        versions = sorted(int(e["response"]["etag"][3:-1]) for e in history.json()["entry"])
        assert versions == list(range(1, rounds + 2))


# --- a real transaction Bundle -------------------------------------------------------------------


def synthea(path: Path) -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
    return bundle


async def load_synthea(client: httpx.AsyncClient, bundle: dict[str, Any]) -> None:
    entries = bundle["entry"]
    response = await client.post("", json=bundle, headers={"Prefer": "return=minimal"})
    assert response.status_code == 200, response.text[:2000]
    result = response.json()["entry"]
    assert [r["response"]["status"] for r in result] == ["201 Created"] * len(entries)
    ids = {
        e["fullUrl"]: r["response"]["location"].split("/_history")[0]
        for e, r in zip(entries, result, strict=True)
    }
    patient_ref = next(
        ids[e["fullUrl"]] for e in entries if e["resource"]["resourceType"] == "Patient"
    )
    # Every reference to an entry now names the resource created for it.
    found = await client.get(
        "Observation", params={"subject": patient_ref, "_count": "1000", "_total": "accurate"}
    )
    observations = [e for e in entries if e["resource"]["resourceType"] == "Observation"]
    assert found.json()["total"] == len(observations)
    for resource in [e["resource"] for e in found.json()["entry"]][:5]:
        assert resource["subject"]["reference"] == patient_ref
        assert resource["encounter"]["reference"] in ids.values()


async def test_a_synthea_patient_bundle_is_stored_with_its_references_resolved(
    client: httpx.AsyncClient,
) -> None:
    await load_synthea(client, synthea(SMALLEST))


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/synthea is not available")
async def test_several_synthea_patient_bundles_are_stored_with_their_references_resolved(
    client: httpx.AsyncClient,
) -> None:
    paths = sorted(SHARED.glob("*.json.gz"), key=lambda p: p.stat().st_size)[1:4]
    for path in paths:
        await load_synthea(client, synthea(path))
