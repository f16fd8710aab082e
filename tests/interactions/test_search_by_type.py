"""Search by every kind of standard parameter (https://hl7.org/fhir/R4/search.html), end to end:
written through the API, indexed in the write's transaction, found by the compiled query."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest


async def ids(client: httpx.AsyncClient, query: str, **headers: str) -> set[str]:
    response = await client.get(query, headers=headers)
    assert response.status_code == 200, response.text
    return {
        e["resource"]["id"]
        for e in response.json().get("entry", [])
        if e["search"]["mode"] == "match"
    }


async def create(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await client.post(resource["resourceType"], json=resource)
    assert response.status_code == 201, response.text
    id: str = response.json()["id"]
    return id


@pytest.fixture
def tag() -> str:
    """A value unique to one test, so tests sharing the database never see each other."""
    return uuid.uuid4().hex[:10]


async def test_string_search_is_a_case_and_accent_insensitive_prefix_match(
    client: httpx.AsyncClient, tag: str
) -> None:
    anna = await create(
        client,
        {"resourceType": "Patient", "name": [{"family": f"Östersund{tag}", "given": ["Åsa"]}]},
    )
    other = await create(client, {"resourceType": "Patient", "name": [{"family": f"Ostberg{tag}"}]})
    assert await ids(client, f"Patient?family=ostersund{tag}") == {anna}
    assert await ids(client, "Patient?family=OSTER&_count=1000") >= {anna}
    assert other not in await ids(client, f"Patient?family=ostersund{tag}")
    assert await ids(client, f"Patient?family:exact=Östersund{tag}") == {anna}
    assert await ids(client, f"Patient?family:exact=östersund{tag}") == set()
    assert await ids(client, f"Patient?name:contains=ersund{tag}") == {anna}


async def test_token_search_matches_code_and_system_forms(
    client: httpx.AsyncClient, tag: str
) -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": f"urn:test:{tag}", "code": "hr"}]},
    }
    found = await create(client, observation)
    assert await ids(client, f"Observation?code=urn:test:{tag}|hr") == {found}
    assert found in await ids(client, "Observation?code=hr")
    assert await ids(client, f"Observation?code=urn:test:{tag}|") == {found}
    assert await ids(client, f"Observation?code=urn:test:{tag}|other") == set()
    both = await ids(client, f"Observation?code=urn:test:{tag}|hr&status=final")
    assert both == {found}
    assert await ids(client, f"Observation?code=urn:test:{tag}|hr&status=preliminary") == set()


async def test_date_search_honours_prefixes_at_every_precision(
    client: httpx.AsyncClient, tag: str
) -> None:
    family = f"Datum{tag}"
    born = await create(
        client,
        {"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1964-08-23"},
    )
    query = f"Patient?family={family}&birthdate="
    assert await ids(client, query + "1964") == {born}
    assert await ids(client, query + "1964-08") == {born}
    assert await ids(client, query + "1964-08-24") == set()
    assert await ids(client, query + "ge1964-08-23") == {born}
    assert await ids(client, query + "gt1964-08-23") == set()
    assert await ids(client, query + "lt1965") == {born}
    assert await ids(client, query + "sa1963") == {born}
    assert await ids(client, query + "eb1964-08-24") == {born}


async def test_quantity_search_uses_the_implicit_precision_range(
    client: httpx.AsyncClient, tag: str
) -> None:
    system = f"urn:test:{tag}"
    found = await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": system, "code": "t"}]},
            "valueQuantity": {
                "value": 37.40,
                "system": "http://unitsofmeasure.org",
                "code": "Cel",
            },
        },
    )
    query = f"Observation?code={system}|t&value-quantity="
    assert await ids(client, query + "37.4") == {found}
    assert await ids(client, query + "37.4|http://unitsofmeasure.org|Cel") == {found}
    assert await ids(client, query + "gt37") == {found}
    assert await ids(client, query + "lt37") == set()
    assert await ids(client, query + "37.5") == set()


async def test_reference_search_chains_and_reverse_chains(
    client: httpx.AsyncClient, tag: str
) -> None:
    patient = await create(client, {"resourceType": "Patient", "name": [{"family": f"Kedja{tag}"}]})
    observation = await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "puls"},
            "subject": {"reference": f"Patient/{patient}"},
        },
    )
    assert await ids(client, f"Observation?subject=Patient/{patient}") == {observation}
    assert await ids(client, f"Observation?patient={patient}") == {observation}
    assert await ids(client, f"Observation?subject:Patient.name=kedja{tag}") == {observation}
    assert await ids(client, f"Observation?subject.family=Kedja{tag}") == {observation}
    assert await ids(client, f"Patient?_has:Observation:subject:_id={observation}") == {patient}
    assert await ids(
        client, f"Patient?_has:Observation:patient:status=final&family=kedja{tag}"
    ) == {patient}
    assert (
        await ids(client, f"Patient?_has:Observation:patient:status=cancelled&family=kedja{tag}")
        == set()
    )


async def test_missing_finds_resources_with_and_without_a_value(
    client: httpx.AsyncClient, tag: str
) -> None:
    family = f"Saknas{tag}"
    with_gender = await create(
        client, {"resourceType": "Patient", "name": [{"family": family}], "gender": "female"}
    )
    without = await create(client, {"resourceType": "Patient", "name": [{"family": family}]})
    assert await ids(client, f"Patient?family={family}&gender:missing=true") == {without}
    assert await ids(client, f"Patient?family={family}&gender:missing=false") == {with_gender}


async def test_composite_search_matches_within_one_component(
    client: httpx.AsyncClient, tag: str
) -> None:
    system = f"urn:test:{tag}"
    found = await create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "blodtryck"},
            "component": [
                {
                    "code": {"coding": [{"system": system, "code": "sys"}]},
                    "valueQuantity": {"value": 150},
                },
                {
                    "code": {"coding": [{"system": system, "code": "dia"}]},
                    "valueQuantity": {"value": 90},
                },
            ],
        },
    )
    query = "Observation?component-code-value-quantity="
    assert await ids(client, query + f"{system}|sys$gt140") == {found}
    # 150 belongs to the systolic component, not the diastolic one.
    assert await ids(client, query + f"{system}|dia$gt140") == set()


async def test_an_unknown_parameter_is_reported_leniently_and_refused_strictly(
    client: httpx.AsyncClient,
) -> None:
    lenient = await client.get("Patient?nonsense=1&_count=1")
    assert lenient.status_code == 200
    outcomes = [e for e in lenient.json().get("entry", []) if e["search"]["mode"] == "outcome"]
    assert "nonsense" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    assert "nonsense" not in lenient.json()["link"][0]["url"]
    strict = await client.get("Patient?nonsense=1", headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["nonsense"]


@pytest.mark.parametrize(
    "query",
    [
        "Patient?birthdate=not-a-date",
        "Observation?value-quantity=abc",
        "Patient?gender:missing=maybe",
        "Patient?family:nonsense=x",
        "Observation?code:in=http://example.org/vs",
        "Observation?status.name=x",
        "Patient?_has:Nope:subject:code=x",
    ],
)
async def test_a_malformed_search_value_gives_400_naming_the_problem(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(query)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_chain_follows_only_the_target_types_that_can_continue_it(
    client: httpx.AsyncClient, tag: str
) -> None:
    organization = await create(
        client, {"resourceType": "Organization", "name": f"Vårdcentralen {tag}"}
    )
    role = await create(
        client,
        {
            "resourceType": "PractitionerRole",
            "organization": {"reference": f"Organization/{organization}"},
        },
    )
    patient = await create(
        client,
        {
            "resourceType": "Patient",
            "generalPractitioner": [{"reference": f"PractitionerRole/{role}"}],
        },
    )
    # general-practitioner may be an Organization, a Practitioner or a PractitionerRole; only a
    # PractitionerRole has an `organization` parameter to chain through.
    found = await ids(client, f"Patient?general-practitioner.organization.name=vardcentralen {tag}")
    assert found == {patient}
    response = await client.get("Patient?general-practitioner.nonsense.name=x")
    assert response.status_code == 400
