"""Searching contained resources (https://hl7.org/fhir/R4/search.html#contained): `_contained`
and `_containedType`, end to end over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pytest

from flode.auth.local import issue_local
from flode.config import Config

LOINC = "http://loinc.org"


class Server(Protocol):
    base_url: str
    root_url: str


def observation(id: str, code: str, value: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": value, "unit": "mg", "system": "http://unitsofmeasure.org"},
    }


@pytest.fixture
async def lab(client: httpx.AsyncClient) -> dict[str, str]:
    """A DiagnosticReport containing two observations (codes `x` 5 mg and `y` 7 mg), and a
    top-level Observation with code `x`; codes unique to the test."""
    tag = uuid.uuid4().hex[:10]
    x, y = f"x-{tag}", f"y-{tag}"
    report = {
        "resourceType": "DiagnosticReport",
        "id": f"dr-{tag}",
        "status": "final",
        "code": {"text": "panel"},
        "contained": [observation("o1", x, 5), observation("o2", y, 7)],
        "result": [{"reference": "#o1"}, {"reference": "#o2"}],
    }
    for resource in (report, observation(f"top-{tag}", x, 5)):
        response = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text
    return {"tag": tag, "x": x, "y": y, "dr": f"DiagnosticReport/dr-{tag}", "top": f"top-{tag}"}


async def search(client: httpx.AsyncClient, url: str, params: Any) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def matches(bundle: dict[str, Any]) -> set[str]:
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == "match"
    }


async def refused(client: httpx.AsyncClient, url: str, params: Any) -> str:
    response = await client.get(url, params=params)
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    return f"{issue['diagnostics']} {' '.join(issue.get('expression', []))}"


async def test_by_default_only_top_level_resources_are_searched(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    expected = {f"Observation/{lab['top']}"}
    assert matches(await search(client, "Observation", {"code": lab["x"]})) == expected
    found = await search(client, "Observation", {"code": lab["x"], "_contained": "false"})
    assert matches(found) == expected


async def test_contained_true_returns_the_resources_that_contain_a_match(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    found = await search(client, "Observation", {"code": lab["x"], "_contained": "true"})
    assert matches(found) == {lab["dr"]}
    assert found["total"] == 1
    explicit = {"code": lab["x"], "_contained": "true", "_containedType": "container"}
    assert matches(await search(client, "Observation", explicit)) == {lab["dr"]}


async def test_all_criteria_must_hold_for_the_same_contained_resource(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    both = [("code", lab["x"]), ("value-quantity", "5"), ("_contained", "true")]
    assert matches(await search(client, "Observation", both)) == {lab["dr"]}
    # o1 has code x, o2 has the value 7: no single contained resource has both.
    split = [("code", lab["x"]), ("value-quantity", "7"), ("_contained", "true")]
    assert matches(await search(client, "Observation", split)) == set()


async def test_contained_type_contained_returns_the_contained_resources_themselves(
    client: httpx.AsyncClient, server: Server, lab: dict[str, str]
) -> None:
    params = {"code": f"{lab['x']},{lab['y']}", "_contained": "true"}
    found = await search(client, "Observation", {**params, "_containedType": "contained"})
    assert found["total"] == 2
    urls = {e["fullUrl"]: e["resource"] for e in found["entry"]}
    base = f"{server.base_url}/{lab['dr']}"
    assert set(urls) == {f"{base}#o1", f"{base}#o2"}
    assert urls[f"{base}#o1"]["code"]["coding"][0]["code"] == lab["x"]
    assert urls[f"{base}#o2"]["resourceType"] == "Observation"


async def test_id_matches_the_id_of_the_contained_resource(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    params = {"_id": "o2", "code": lab["y"], "_contained": "true"}
    assert matches(await search(client, "Observation", params)) == {lab["dr"]}
    params["_id"] = "o1"
    assert matches(await search(client, "Observation", params)) == set()


async def test_contained_both_returns_top_level_matches_and_containers_of_contained_ones(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    found = await search(client, "Observation", {"code": lab["x"], "_contained": "both"})
    assert matches(found) == {lab["dr"], f"Observation/{lab['top']}"}


async def test_a_contained_resource_of_another_type_is_searched_as_its_own_type(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    tag = lab["tag"]
    condition = {
        "resourceType": "Condition",
        "id": f"c-{tag}",
        "contained": [{"resourceType": "Patient", "id": "p", "name": [{"family": f"F{tag}"}]}],
        "subject": {"reference": "#p"},
    }
    assert (await client.put(f"Condition/c-{tag}", json=condition)).status_code == 201
    params = {"family": f"f{tag}", "_contained": "true"}
    assert matches(await search(client, "Patient", params)) == {f"Condition/c-{tag}"}
    # The contained Patient is no Patient of its own, nor does it make the Condition one.
    assert matches(await search(client, "Patient", {"family": f"f{tag}"})) == set()
    assert matches(await search(client, "Condition", {"_id": f"c-{tag}"})) == {f"Condition/c-{tag}"}


async def test_an_update_replaces_and_a_delete_removes_the_contained_resources(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    url = f"{lab['dr']}"
    report = (await client.get(url)).json()
    report["contained"] = [observation("o3", lab["y"], 9)]
    report["result"] = [{"reference": "#o3"}]
    assert (await client.put(url, json=report)).status_code == 200
    params = {"code": lab["x"], "_contained": "true"}
    assert matches(await search(client, "Observation", params)) == set()
    params = {"code": lab["y"], "_contained": "true", "_containedType": "contained"}
    found = await search(client, "Observation", params)
    assert [e["fullUrl"].rsplit("#")[1] for e in found["entry"]] == ["o3"]
    assert (await client.delete(url)).status_code in (200, 204)
    assert matches(await search(client, "Observation", params)) == set()


async def test_contained_resources_are_paged(client: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:10]
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"text": "panel"},
        "contained": [observation(f"o{n}", f"p-{tag}", n) for n in range(5)],
    }
    assert (await client.post("DiagnosticReport", json=report)).status_code == 201
    params = {"code": f"p-{tag}", "_contained": "true", "_containedType": "contained"}
    first = await search(client, "Observation", {**params, "_count": "2"})
    assert first["total"] == 5
    seen = [e["resource"]["id"] for e in first["entry"]]
    page = first
    while next_link := [link for link in page["link"] if link["relation"] == "next"]:
        response = await client.get(next_link[0]["url"])
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [e["resource"]["id"] for e in page["entry"]]
    assert seen == [f"o{n}" for n in range(5)]
    counted = await search(client, "Observation", {**params, "_summary": "count"})
    assert counted["total"] == 5
    assert "entry" not in counted


async def test_summary_and_elements_apply_to_contained_resources(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    params = {
        "code": lab["x"],
        "_contained": "true",
        "_containedType": "contained",
        "_elements": "code",
    }
    resource = (await search(client, "Observation", params))["entry"][0]["resource"]
    assert "valueQuantity" not in resource
    assert resource["code"]["coding"][0]["code"] == lab["x"]


async def test_containers_can_include_what_they_refer_to(
    client: httpx.AsyncClient, lab: dict[str, str]
) -> None:
    tag = lab["tag"]
    patient = {"resourceType": "Patient", "id": f"pat-{tag}"}
    assert (await client.put(f"Patient/pat-{tag}", json=patient)).status_code == 201
    report = (await client.get(lab["dr"])).json()
    report["subject"] = {"reference": f"Patient/pat-{tag}"}
    assert (await client.put(lab["dr"], json=report)).status_code == 200
    params = {"code": lab["x"], "_contained": "true", "_include": "DiagnosticReport:subject"}
    found = await search(client, "Observation", params)
    assert matches(found) == {lab["dr"]}
    included = {e["resource"]["id"] for e in found["entry"] if e["search"]["mode"] == "include"}
    assert included == {f"pat-{tag}"}


async def test_contained_type_needs_contained_true_and_a_known_value(
    client: httpx.AsyncClient,
) -> None:
    assert "_containedType" in await refused(client, "Observation", {"_containedType": "contained"})
    assert "_containedType" in await refused(
        client, "Observation", {"_contained": "both", "_containedType": "contained"}
    )
    assert "_containedType" in await refused(
        client, "Observation", {"_contained": "true", "_containedType": "parent"}
    )
    assert "_contained" in await refused(client, "Observation", {"_contained": "maybe"})


async def test_chains_has_sort_and_other_unsupported_combinations_are_refused(
    client: httpx.AsyncClient,
) -> None:
    for params in (
        {"_contained": "true", "subject:Patient.name": "x"},
        {"_contained": "both", "_has:Observation:has-member:code": "x"},
        {"_contained": "true", "_sort": "date"},
        {"_contained": "true", "_lastUpdated": "gt2020"},
        {"_contained": "true", "_content": "x"},
        {"_contained": "true", "_containedType": "contained", "_include": "Observation:subject"},
    ):
        assert await refused(client, "Observation", params)
    assert "_contained" in await refused(client, "", {"_contained": "true"})
    assert "_contained" in await refused(client, "Patient/x/Observation", {"_contained": "true"})


@pytest.fixture
async def as_token(server: Server, test_config: Config) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(*scopes: str) -> httpx.AsyncClient:
        token = issue_local(test_config, server.root_url, scopes, client_id="module-under-test")
        client = httpx.AsyncClient(
            base_url=server.base_url + "/", headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_a_contained_search_needs_a_scope_to_search_the_contained_type(
    as_token: Any, lab: dict[str, str]
) -> None:
    client = as_token("user/DiagnosticReport.rs")
    response = await client.get("Observation", params={"code": lab["x"], "_contained": "true"})
    assert response.status_code == 403


async def test_only_containers_the_token_may_search_are_returned(
    as_token: Any, lab: dict[str, str]
) -> None:
    params = {"code": lab["x"], "_contained": "true"}
    observations = as_token("user/Observation.rs")
    assert matches(await search(observations, "Observation", params)) == set()
    contained = await search(observations, "Observation", {**params, "_containedType": "contained"})
    assert contained.get("entry", []) == []
    both = as_token("user/Observation.rs", "user/DiagnosticReport.rs")
    assert matches(await search(both, "Observation", params)) == {lab["dr"]}
