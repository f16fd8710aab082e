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
    assert {i["code"] for i in rest["interaction"]} == {
        "transaction",
        "batch",
        "search-system",
        "history-system",
    }


async def test_every_resource_lists_the_interactions_and_conditional_flags_implemented(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    # AuditEvent is the access log: read and search only (tests/audit/test_routes.py).
    for resource in (r for r in rest["resource"] if r["type"] != "AuditEvent"):
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


async def test_every_standard_search_parameter_the_compiler_answers_is_listed(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    by_type = {r["type"]: {p["name"]: p for p in r["searchParam"]} for r in rest["resource"]}
    for kind, params in by_type.items():
        if kind == "AuditEvent":
            continue  # the access log has parameters of its own (tests/audit/test_routes.py)
        assert params["_id"]["type"] == "token"
        assert params["_lastUpdated"]["type"] == "date"
        assert params["_content"]["type"] == "string"
        assert params["_list"]["type"] == "special"
    assert "_text" in by_type["Patient"]
    assert "_text" not in by_type["Bundle"]  # a Bundle has no narrative
    patient = by_type["Patient"]
    assert patient["identifier"]["definition"].endswith("/Patient-identifier")
    assert {"name", "family", "birthdate", "gender", "general-practitioner"} <= set(patient)
    observation = by_type["Observation"]
    assert observation["code-value-quantity"]["type"] == "composite"
    assert observation["value-quantity"]["type"] == "quantity"
    assert "identifier" not in by_type["Binary"]


async def test_the_parameters_not_supported_are_named_with_a_reason(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    assert "Resource-query (_query names a custom query" in rest["documentation"]
    assert "Resource-content" not in rest["documentation"]  # the full-text index answers it


async def test_each_type_lists_what_it_can_include_and_revinclude(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    by_type = {r["type"]: r for r in rest["resource"]}
    observation, patient = by_type["Observation"], by_type["Patient"]
    assert {"Observation:subject", "Observation:patient", "*"} <= set(observation["searchInclude"])
    assert {"Observation:subject", "Encounter:patient", "*"} <= set(patient["searchRevInclude"])
    assert "Observation:subject" not in by_type["Organization"]["searchRevInclude"]


async def test_each_claimed_type_level_interaction_answers(client: httpx.AsyncClient) -> None:
    (rest,) = (await statement(client))["rest"]
    absent = str(uuid.uuid4())
    for resource in rest["resource"]:
        kind = resource["type"]
        search = await client.get(kind, params={"_id": absent})
        assert search.status_code == 200, kind
        assert search.json()["type"] == "searchset"
        if kind == "AuditEvent":
            continue  # no history: the log keeps no versions
        history = await client.get(f"{kind}/_history", params={"_count": "1"})
        assert history.status_code == 200, kind
        assert (await client.get(f"{kind}/{absent}")).status_code == 404
    assert (await client.get("_history", params={"_count": "1"})).status_code == 200


async def test_the_claimed_system_interactions_answer(client: httpx.AsyncClient) -> None:
    (rest,) = (await statement(client))["rest"]
    for code in ("transaction", "batch"):
        assert {"code": code} in rest["interaction"]
        response = await client.post("", json={"resourceType": "Bundle", "type": code})
        assert response.status_code == 200, response.text
        assert response.json()["type"] == f"{code}-response"


async def test_metadata_honours_format_and_pretty(client: httpx.AsyncClient) -> None:
    response = await client.get("metadata", params={"_format": "json", "_pretty": "true"})
    assert response.status_code == 200
    assert response.text.startswith('{\n  "resourceType": "CapabilityStatement"')
    assert (await client.get("metadata", params={"_format": "xml"})).status_code == 406


async def test_the_statement_names_the_smart_authorization_endpoints(
    client: httpx.AsyncClient,
) -> None:
    (rest,) = (await statement(client))["rest"]
    security = rest["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = security["extension"]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    root = str(client.base_url).removesuffix("/").removesuffix("/fhir")
    assert uris["token"] == f"{root}/auth/token"
    assert uris["authorize"] == f"{root}/auth/authorize"
