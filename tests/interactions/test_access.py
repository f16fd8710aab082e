"""Scopes are enforced on every interaction: nothing a plain read would deny is reached through
search, `_include`, `_revinclude`, chains, `_has`, history or writes
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pytest

from flode.auth.local import issue_local
from flode.config import Config

from .test_search_results import TAG_SYSTEM, keys, put, tagged

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


class Server(Protocol):
    base_url: str
    root_url: str


@pytest.fixture
async def ward(client: httpx.AsyncClient) -> dict[str, Any]:
    """Two patients with a practitioner; each patient has a lab and a vital-signs observation."""
    tag = uuid.uuid4().hex
    p = tag[:8]
    resources: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": f"{p}-doc", "name": [{"family": "Lind"}]}
    ]
    for n in (1, 2):
        resources.append(
            {
                "resourceType": "Patient",
                "id": f"{p}-pat-{n}",
                "name": [{"family": f"Berg{n}"}],
                "generalPractitioner": [{"reference": f"Practitioner/{p}-doc"}],
            }
        )
        for category, code in (("laboratory", "2345-7"), ("vital-signs", "8867-4")):
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"{p}-{category[:3]}-{n}",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/"
                                    "observation-category",
                                    "code": category,
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": f"Patient/{p}-pat-{n}"},
                    "performer": [{"reference": f"Practitioner/{p}-doc"}],
                }
            )
    for resource in resources:
        await put(client, tagged(resource, tag))
    return {"tag": f"{TAG_SYSTEM}|{tag}", "p": p}


@pytest.fixture
async def as_token(server: Server, test_config: Config) -> AsyncIterator[Any]:
    """A factory of HTTP clients, each with a token of its own scopes (and launch patient)."""
    clients: list[httpx.AsyncClient] = []

    def make(*scopes: str, patient: str | None = None) -> httpx.AsyncClient:
        context = {"patient": patient} if patient is not None else None
        token = issue_local(
            test_config, server.root_url, scopes, client_id="module-under-test", context=context
        )
        client = httpx.AsyncClient(
            base_url=server.base_url + "/", headers={"Authorization": f"Bearer {token}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def found(client: httpx.AsyncClient, url: str, params: Any) -> dict[str, Any]:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_type_the_token_has_no_scope_for_is_forbidden_for_read_and_search(
    as_token: Any, ward: dict[str, Any]
) -> None:
    client = as_token("user/Observation.rs")
    p = ward["p"]
    read = await client.get(f"Patient/{p}-pat-1")
    assert read.status_code == 403
    assert read.json()["issue"][0]["code"] == "forbidden"
    assert (await client.get("Patient")).status_code == 403
    assert (await client.get(f"Patient/{p}-pat-1/_history")).status_code == 403
    assert (await client.get(f"Observation/{p}-lab-1")).status_code == 200


async def test_a_read_scope_does_not_allow_writes(as_token: Any, ward: dict[str, Any]) -> None:
    client = as_token("user/Observation.rs")
    created = await client.post("Observation", json={"resourceType": "Observation"})
    assert created.status_code == 403
    deleted = await client.delete(f"Observation/{ward['p']}-lab-1")
    assert deleted.status_code == 403


async def test_includes_leave_out_what_the_token_may_not_read(
    as_token: Any, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    client = as_token("user/Observation.rs", "user/Practitioner.rs")
    bundle = await found(
        client,
        "Observation",
        [("_tag", ward["tag"]), ("_include", "Observation:subject"), ("_include", "Observation:*")],
    )
    assert keys(bundle, "include") == {f"Practitioner/{p}-doc"}  # no Patient
    back = await found(
        client,
        "Practitioner",
        [("_id", f"{p}-doc"), ("_revinclude", "Patient:general-practitioner")],
    )
    assert keys(back, "include") == set()


async def test_chains_and_has_into_a_type_without_scope_are_forbidden(
    as_token: Any, ward: dict[str, Any]
) -> None:
    client = as_token("user/Observation.rs", "user/Practitioner.rs")
    chain = await client.get("Observation", params={"subject:Patient.name": "Berg1"})
    assert chain.status_code == 403
    has = await client.get("Practitioner", params={"_has:Patient:general-practitioner:name": "x"})
    assert has.status_code == 403


async def test_a_patient_scope_reaches_only_the_launch_patients_compartment(
    as_token: Any, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    client = as_token("patient/*.rs", patient=f"{p}-pat-1")
    observations = await found(client, "Observation", {"_tag": ward["tag"]})
    assert keys(observations, "match") == {f"Observation/{p}-lab-1", f"Observation/{p}-vit-1"}
    patients = await found(client, "Patient", {"_tag": ward["tag"]})
    assert keys(patients, "match") == {f"Patient/{p}-pat-1"}
    assert (await client.get(f"Observation/{p}-lab-2")).status_code == 404
    assert (await client.get(f"Patient/{p}-pat-2")).status_code == 404
    assert (await client.get(f"Patient/{p}-pat-1")).status_code == 200
    other = await found(client, f"Patient/{p}-pat-2/Observation", {})
    assert other.get("total") == 0
    everything = await found(client, "", {"_tag": ward["tag"]})
    assert keys(everything, "match") == {
        f"Patient/{p}-pat-1",
        f"Observation/{p}-lab-1",
        f"Observation/{p}-vit-1",
    }
    # The practitioner is outside the compartment: not included, not readable.
    included = await found(
        client, "Observation", {"_tag": ward["tag"], "_include": "Observation:performer"}
    )
    assert keys(included, "include") == set()
    assert (await client.get("Observation/_history")).status_code == 403


async def test_a_patient_scope_without_a_launch_patient_reaches_nothing(
    as_token: Any, ward: dict[str, Any]
) -> None:
    client = as_token("patient/Observation.rs")
    bundle = await found(client, "Observation", {"_tag": ward["tag"]})
    assert bundle.get("total") == 0


async def test_a_patient_scope_writes_only_into_the_launch_patients_compartment(
    as_token: Any, ward: dict[str, Any], client: httpx.AsyncClient
) -> None:
    p = ward["p"]
    app = as_token("patient/Observation.cruds", patient=f"{p}-pat-1")
    mine = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "puls"},
        "subject": {"reference": f"Patient/{p}-pat-1"},
    }
    assert (await app.post("Observation", json=mine)).status_code == 201
    theirs = {**mine, "subject": {"reference": f"Patient/{p}-pat-2"}}
    refused = await app.post("Observation", json=theirs)
    assert refused.status_code == 403
    # Nothing of the refused write was stored.
    stored = await client.get(
        "Observation", params={"subject": f"Patient/{p}-pat-2", "code:text": "puls"}
    )
    assert stored.json()["total"] == 0
    # Moving one of the patient's observations to another patient is refused too.
    moved = {**mine, "id": f"{p}-lab-1", "subject": {"reference": f"Patient/{p}-pat-2"}}
    assert (await app.put(f"Observation/{p}-lab-1", json=moved)).status_code == 403
    assert (await app.delete(f"Observation/{p}-lab-2")).status_code == 403
    assert (await client.get(f"Observation/{p}-lab-2")).status_code == 200


async def test_a_granular_scope_reaches_only_the_resources_its_criteria_match(
    as_token: Any, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    client = as_token(f"user/Observation.rs?category={LAB}", "user/Patient.rs")
    bundle = await found(client, "Observation", {"_tag": ward["tag"]})
    assert keys(bundle, "match") == {f"Observation/{p}-lab-1", f"Observation/{p}-lab-2"}
    assert (await client.get(f"Observation/{p}-vit-1")).status_code == 404
    # A reverse chain cannot probe the vital signs either.
    probed = await found(
        client, "Patient", {"_tag": ward["tag"], "_has:Observation:subject:code": "8867-4"}
    )
    assert probed.get("total") == 0
    allowed = await found(
        client, "Patient", {"_tag": ward["tag"], "_has:Observation:subject:code": "2345-7"}
    )
    assert allowed.get("total") == 2


async def test_a_bundle_write_with_a_confined_token_is_refused_and_writes_nothing(
    as_token: Any, ward: dict[str, Any]
) -> None:
    p = ward["p"]
    app = as_token("patient/Observation.cruds", patient=f"{p}-pat-1")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": f"Patient/{p}-pat-1"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    assert (await app.post("", json=bundle)).status_code == 403


async def test_server_administration_needs_an_administrators_token(as_token: Any) -> None:
    client = as_token("user/*.cruds")
    assert (await client.post("$reindex")).status_code == 403
