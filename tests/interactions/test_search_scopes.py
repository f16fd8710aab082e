"""Where a search looks (https://hl7.org/fhir/R4/http.html#search): `POST …/_search`, across
all types at the base URL (with `_type`), and in a patient's compartment
(`Patient/{id}/{type}`, https://hl7.org/fhir/R4/compartmentdefinition-patient.html)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from .test_search_results import TAG_SYSTEM, get, ids, keys, put, tagged

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def ward(client: httpx.AsyncClient) -> dict[str, Any]:
    """Two patients, each with an observation and a condition; one encounter for the first."""
    tag = uuid.uuid4().hex
    p = tag[:8]
    resources: list[dict[str, Any]] = []
    for n in (1, 2):
        resources += [
            {"resourceType": "Patient", "id": f"{p}-pat-{n}", "name": [{"family": f"Lund{n}"}]},
            {
                "resourceType": "Observation",
                "id": f"{p}-obs-{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
                "subject": {"reference": f"Patient/{p}-pat-{n}"},
            },
            {
                "resourceType": "Condition",
                "id": f"{p}-cond-{n}",
                "subject": {"reference": f"Patient/{p}-pat-{n}"},
                "code": {"text": "astma"},
            },
        ]
    resources.append(
        {
            "resourceType": "Encounter",
            "id": f"{p}-enc-1",
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": {"reference": f"Patient/{p}-pat-1"},
        }
    )
    for resource in resources:
        await put(client, tagged(resource, tag))
    return {"tag": f"{TAG_SYSTEM}|{tag}", "p": p}


async def test_post_search_takes_its_parameters_from_the_form_body(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    response = await client.post(
        "Observation/_search", content=f"_tag={ward['tag']}&subject=Patient/{p}-pat-1", headers=FORM
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [f"{p}-obs-1"]


async def test_post_search_combines_url_and_body_parameters(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    response = await client.post(
        "Observation/_search",
        params={"subject": f"Patient/{p}-pat-2"},
        content=f"_tag={ward['tag']}",
        headers=FORM,
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [f"{p}-obs-2"]


async def test_post_search_with_another_content_type_is_refused_with_415(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("Observation/_search", json={"subject": "Patient/1"})
    assert response.status_code == 415
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_system_search_finds_every_type_with_a_tag(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    found = await get(client, "", {"_tag": ward["tag"], "_count": 50})
    assert keys(found, "match") == {
        f"Patient/{p}-pat-1",
        f"Patient/{p}-pat-2",
        f"Observation/{p}-obs-1",
        f"Observation/{p}-obs-2",
        f"Condition/{p}-cond-1",
        f"Condition/{p}-cond-2",
        f"Encounter/{p}-enc-1",
    }
    assert found["total"] == 7


async def test_system_search_with_type_restricts_to_those_types(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    found = await get(client, "", {"_tag": ward["tag"], "_type": "Condition,Encounter"})
    assert keys(found, "match") == {
        f"Condition/{p}-cond-1",
        f"Condition/{p}-cond-2",
        f"Encounter/{p}-enc-1",
    }


async def test_system_search_with_type_accepts_parameters_all_those_types_have(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    found = await get(
        client,
        "",
        {"_tag": ward["tag"], "_type": "Condition,Observation", "patient": f"{p}-pat-1"},
    )
    assert keys(found, "match") == {f"Condition/{p}-cond-1", f"Observation/{p}-obs-1"}


async def test_system_search_by_post_to_underscore_search(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    response = await client.post(
        "_search", content=f"_tag={ward['tag']}&_type=Encounter", headers=FORM
    )
    assert response.status_code == 200, response.text
    assert ids(response.json()) == [f"{ward['p']}-enc-1"]


async def test_system_search_ignores_a_parameter_not_every_type_has_and_says_so(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    found = await get(client, "", {"_tag": ward["tag"], "family": "Lund1"})
    assert found["total"] == 7
    (outcome,) = [e for e in found["entry"] if e["search"]["mode"] == "outcome"]
    assert "family" in outcome["resource"]["issue"][0]["diagnostics"]
    strict = await client.get(
        "", params={"_tag": ward["tag"], "family": "Lund1"}, headers={"prefer": "handling=strict"}
    )
    assert strict.status_code == 400


async def test_system_search_with_an_unknown_type_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("", params={"_type": "Nonsense"})
    assert response.status_code in (400, 404)
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_compartment_search_finds_only_that_patients_resources(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    found = await get(client, f"Patient/{p}-pat-1/Observation")
    assert ids(found) == [f"{p}-obs-1"]
    conditions = await get(client, f"Patient/{p}-pat-2/Condition", {"code:text": "astma"})
    assert ids(conditions) == [f"{p}-cond-2"]
    self_link = next(link["url"] for link in found["link"] if link["relation"] == "self")
    assert f"/Patient/{p}-pat-1/Observation?" in self_link


async def test_compartment_search_over_all_types_with_a_star(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    found = await get(client, f"Patient/{p}-pat-1/*")
    assert keys(found, "match") == {
        f"Patient/{p}-pat-1",
        f"Observation/{p}-obs-1",
        f"Condition/{p}-cond-1",
        f"Encounter/{p}-enc-1",
    }
    typed = await get(client, f"Patient/{p}-pat-1/*", {"_type": "Encounter"})
    assert keys(typed, "match") == {f"Encounter/{p}-enc-1"}


async def test_compartment_search_of_an_unknown_patient_is_empty(
    client: httpx.AsyncClient,
) -> None:
    found = await get(client, f"Patient/{uuid.uuid4()}/Observation")
    assert found["total"] == 0


async def test_compartment_search_of_a_type_outside_the_compartment_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("Patient/1/Organization")
    assert response.status_code == 400
    other = await client.get("Practitioner/1/Observation")
    assert other.status_code == 400
    assert other.json()["resourceType"] == "OperationOutcome"


async def test_system_search_takes_list_and_content(
    client: httpx.AsyncClient, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    items = [{"item": {"reference": f"Condition/{p}-cond-1"}}]
    items.append({"item": {"reference": f"Encounter/{p}-enc-1"}})
    await put(
        client,
        {
            "resourceType": "List",
            "id": f"{p}-list",
            "status": "current",
            "mode": "working",
            "entry": items,
        },
    )
    found = await get(client, "", {"_list": f"{p}-list"})
    assert keys(found, "match") == {f"Condition/{p}-cond-1", f"Encounter/{p}-enc-1"}
    content = await get(client, "", {"_tag": ward["tag"], "_content": "astma"})
    assert keys(content, "match") == {f"Condition/{p}-cond-1", f"Condition/{p}-cond-2"}


async def test_post_search_with_a_body_that_is_not_utf8_is_refused_with_400(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("Observation/_search", content=b"code=\xff\xfe", headers=FORM)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Observation", params={"_count": 1})).status_code == 200
