"""The CapabilityStatement (https://hl7.org/fhir/R4/http.html#capabilities): what it claims is
what the server does."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from flode.fhir.definitions import Definitions
from flode.fhir.validation import Validator

INTERACTIONS = {
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
}


@pytest.fixture(scope="module")
def definitions() -> Definitions:
    return Definitions.load()


async def statement(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    return body


async def test_metadata_returns_a_valid_r4_capability_statement(
    client: httpx.AsyncClient, definitions: Definitions
) -> None:
    capability = await statement(client)
    assert capability["resourceType"] == "CapabilityStatement"
    assert capability["fhirVersion"] == "4.0.1"
    assert capability["kind"] == "instance"
    assert capability["status"] == "active"
    assert {"application/fhir+json", "application/json"} <= set(capability["format"])
    assert capability["patchFormat"] == ["application/json-patch+json"]
    assert Validator(definitions).validate(capability) == []


async def test_every_resource_type_is_listed_once(
    client: httpx.AsyncClient, definitions: Definitions
) -> None:
    (rest,) = (await statement(client))["rest"]
    assert rest["mode"] == "server"
    types = [r["type"] for r in rest["resource"]]
    assert len(types) == len(set(types)) == 146
    assert set(types) == set(definitions.resource_types)
    assert {"Patient", "Observation", "Bundle", "Binary", "Parameters"} <= set(types)
    assert not {"Resource", "DomainResource"} & set(types)
    assert rest["interaction"] == [{"code": "history-system"}]


async def test_every_resource_lists_the_interactions_and_conditional_flags_implemented(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    for resource in rest["resource"]:
        assert {i["code"] for i in resource["interaction"]} == INTERACTIONS
        assert resource["versioning"] == "versioned-update"
        assert resource["readHistory"] is True
        assert resource["updateCreate"] is True
        assert resource["conditionalCreate"] is True
        assert resource["conditionalUpdate"] is True
        assert resource["conditionalDelete"] == "single"
        # If-None-Match and If-Modified-Since are both honoured on read.
        assert resource["conditionalRead"] == "full-support"
        assert "conditionalPatch" not in resource


async def test_identifier_is_a_search_parameter_only_of_types_with_an_identifier_element(
    client: httpx.AsyncClient, definitions: Definitions
) -> None:
    (rest,) = (await statement(client))["rest"]
    for resource in rest["resource"]:
        kind = resource["type"]
        names = {p["name"]: p for p in resource["searchParam"]}
        assert names["_id"]["type"] == "token"
        assert names["_lastUpdated"]["type"] == "date"
        has_identifier = "identifier" in definitions.nodes[kind].properties
        assert ("identifier" in names) == has_identifier, kind
        if has_identifier:
            assert names["identifier"]["type"] == "token"
            assert names["identifier"]["definition"].endswith(f"/{kind}-identifier")
        assert set(names) <= {"_id", "identifier", "_lastUpdated"}
    by_type = {r["type"]: {p["name"] for p in r["searchParam"]} for r in rest["resource"]}
    assert "identifier" in by_type["Patient"]
    assert "identifier" not in by_type["Binary"]
    assert "identifier" not in by_type["Parameters"]


async def test_each_claimed_type_level_interaction_answers(client: httpx.AsyncClient) -> None:
    (rest,) = (await statement(client))["rest"]
    absent = str(uuid.uuid4())
    for resource in rest["resource"]:
        kind = resource["type"]
        search = await client.get(kind, params={"_id": absent})
        assert search.status_code == 200, kind
        assert search.json()["type"] == "searchset"
        history = await client.get(f"{kind}/_history", params={"_count": "1"})
        assert history.status_code == 200, kind
        assert (await client.get(f"{kind}/{absent}")).status_code == 404
    assert (await client.get("_history", params={"_count": "1"})).status_code == 200


async def test_metadata_honours_format_and_pretty(client: httpx.AsyncClient) -> None:
    response = await client.get("metadata", params={"_format": "json", "_pretty": "true"})
    assert response.status_code == 200
    assert response.text.startswith('{\n  "resourceType": "CapabilityStatement"')
    assert (await client.get("metadata", params={"_format": "xml"})).status_code == 406
