"""`Patient/{id}/$everything` returns the whole compartment and what it refers to, in stable
pages, filtered by `_type`, `_since`, `start` and `end`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from .conftest import Source
from .expected import SUPPORTING, every_patient, patient_data
from .synthea import BUNDLES


async def pages(
    client: httpx.AsyncClient,
    url: str,
    params: dict[str, str],
    headers: dict[str, str] | None = None,
) -> list[Any]:
    """Every page of the answer, following `next`."""
    response = await client.get(url, params=params or None, headers=headers)
    assert response.status_code == 200, response.text
    found = [response.json()]
    while (following := _next(found[-1])) is not None:
        assert len(found) < 200
        response = await client.get(following, headers=headers)
        assert response.status_code == 200, response.text
        found.append(response.json())
    return found


def _next(bundle: Any) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)


def keys_of(bundles: list[Any]) -> list[tuple[str, str]]:
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for bundle in bundles
        for e in bundle.get("entry", [])
    ]


@pytest.mark.parametrize("bundle", BUNDLES[:4])
async def test_returns_the_compartment_and_the_resources_it_refers_to(
    fhir: httpx.AsyncClient, source: Source, bundle: str
) -> None:
    expected = patient_data(bundle)
    found = await pages(fhir, f"Patient/{expected.patient}/$everything", {"_count": "1000"})
    assert len(found) == 1
    keys = keys_of(found)
    assert len(keys) == len(set(keys))
    assert set(keys) == expected.keys
    assert found[0]["total"] == len(expected.keys)
    assert found[0]["type"] == "searchset"
    # The patient first; supporting resources are `include`d, the compartment `match`es.
    assert keys[0] == ("Patient", expected.patient)
    for entry in found[0]["entry"]:
        kind = entry["resource"]["resourceType"]
        assert entry["search"]["mode"] == ("include" if kind in SUPPORTING else "match")


async def test_resources_are_returned_as_stored(fhir: httpx.AsyncClient) -> None:
    expected = patient_data(BUNDLES[0])
    found = await pages(fhir, f"Patient/{expected.patient}/$everything", {"_count": "1000"})
    for entry in found[0]["entry"]:
        resource = entry["resource"]
        read = await fhir.get(f"{resource['resourceType']}/{resource['id']}")
        assert read.json() == resource


async def test_pages_hold_every_resource_once(fhir: httpx.AsyncClient) -> None:
    expected = patient_data(BUNDLES[1])
    url = f"Patient/{expected.patient}/$everything"
    found = await pages(fhir, url, {"_count": "17"})
    keys = keys_of(found)
    assert len(found) == -(-len(expected.keys) // 17)
    assert len(keys) == len(set(keys))
    assert set(keys) == expected.keys
    assert all(b["total"] == len(expected.keys) for b in found)


async def test_later_pages_do_not_shift_when_resources_are_added(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    patient = f"ev-{uuid.uuid4()}"
    assert (await fhir.put(f"Patient/{patient}", json=_patient(patient))).status_code == 201
    for n in range(6):
        observation = _observation(f"{patient}-{n}", patient, "2020-01-01")
        assert (await fhir.put(f"Observation/{observation['id']}", json=observation)).is_success
    first = await fhir.get(f"Patient/{patient}/$everything", params={"_count": "3"})
    bundle = first.json()
    late = _observation(f"{patient}-late", patient, "2020-01-01")
    assert (await fhir.put(f"Observation/{late['id']}", json=late)).is_success
    rest = await pages(fhir, _next(bundle) or "", {})
    keys = keys_of([bundle, *rest])
    assert len(keys) == 7
    assert ("Observation", late["id"]) not in keys


async def test_type_limits_the_answer_to_those_types(fhir: httpx.AsyncClient) -> None:
    expected = patient_data(BUNDLES[2])
    found = await pages(
        fhir,
        f"Patient/{expected.patient}/$everything",
        {"_type": "Encounter,Practitioner", "_count": "1000"},
    )
    wanted = {k for k in expected.keys if k[0] in ("Encounter", "Practitioner")}
    assert set(keys_of(found)) == wanted
    assert any(k[0] == "Practitioner" for k in wanted)


async def test_start_and_end_limit_the_compartment_to_care_within_them(
    fhir: httpx.AsyncClient,
) -> None:
    patient = f"ev-{uuid.uuid4()}"
    assert (await fhir.put(f"Patient/{patient}", json=_patient(patient))).status_code == 201
    dates = {"early": "2019-06-01", "inside": "2021-03-15", "late": "2023-01-01"}
    for name, date in dates.items():
        resource = _observation(f"{patient}-{name}", patient, date)
        assert (await fhir.put(f"Observation/{resource['id']}", json=resource)).is_success
    undated: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{patient}-undated",
        "status": "final",
    }
    undated |= {"code": {"text": "puls"}, "subject": {"reference": f"Patient/{patient}"}}
    assert (await fhir.put(f"Observation/{undated['id']}", json=undated)).is_success
    url = f"Patient/{patient}/$everything"
    found = keys_of(await pages(fhir, url, {"start": "2020", "end": "2022-12-31"}))
    ids = {id for _, id in found}
    assert ids == {patient, f"{patient}-inside", f"{patient}-undated"}
    found = keys_of(await pages(fhir, url, {"end": "2021-03-15"}))
    assert {id for _, id in found} == {
        patient,
        f"{patient}-early",
        f"{patient}-inside",
        undated["id"],
    }


async def test_since_keeps_only_what_changed_after_it(fhir: httpx.AsyncClient) -> None:
    patient = f"ev-{uuid.uuid4()}"
    assert (await fhir.put(f"Patient/{patient}", json=_patient(patient))).status_code == 201
    old = _observation(f"{patient}-old", patient, "2020-01-01")
    assert (await fhir.put(f"Observation/{old['id']}", json=old)).is_success
    since = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    new = _observation(f"{patient}-new", patient, "2020-01-01")
    assert (await fhir.put(f"Observation/{new['id']}", json=new)).is_success
    found = keys_of(await pages(fhir, f"Patient/{patient}/$everything", {"_since": since}))
    assert found == [("Observation", new["id"])]


async def test_an_unknown_patient_is_not_found(fhir: httpx.AsyncClient) -> None:
    response = await fhir.get(f"Patient/nobody-{uuid.uuid4()}/$everything")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_deleted_patient_is_gone(fhir: httpx.AsyncClient) -> None:
    patient = f"ev-{uuid.uuid4()}"
    assert (await fhir.put(f"Patient/{patient}", json=_patient(patient))).status_code == 201
    assert (await fhir.delete(f"Patient/{patient}")).status_code == 204
    assert (await fhir.get(f"Patient/{patient}/$everything")).status_code == 410


@pytest.mark.parametrize(
    "params",
    [
        {"start": "not-a-date"},
        {"end": "2020-13"},
        {"_since": "yesterday"},
        {"_type": "Observation,Nonsense"},
        {"_sort": "date"},
        {"_count": "many"},
    ],
)
async def test_bad_parameters_are_refused(fhir: httpx.AsyncClient, params: dict[str, str]) -> None:
    patient = every_patient()[0].patient
    response = await fhir.get(f"Patient/{patient}/$everything", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def _patient(id: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, "name": [{"family": "Alltid"}]}


def _observation(id: str, patient: str, date: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"text": "puls"},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": date,
    }


async def test_a_patient_token_reaches_its_own_patients_compartment_only(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    mine, other = every_patient()[4], every_patient()[5]
    headers = source.token_for(["patient/*.rs"], "portal", {"patient": mine.patient})
    found = await pages(fhir, f"Patient/{mine.patient}/$everything", {"_count": "1000"}, headers)
    # The supporting resources are outside the patient's compartment, so outside its reach.
    assert set(keys_of(found)) == set(mine.compartment)
    response = await fhir.get(f"Patient/{other.patient}/$everything", headers=headers)
    assert response.status_code == 404


async def test_a_token_reads_only_the_types_it_has_scopes_for(
    fhir: httpx.AsyncClient, source: Source
) -> None:
    expected = patient_data(BUNDLES[6])
    headers = source.token_for(["system/Patient.rs", "system/Condition.rs"], "registry")
    found = await pages(
        fhir, f"Patient/{expected.patient}/$everything", {"_count": "1000"}, headers
    )
    assert set(keys_of(found)) == {k for k in expected.keys if k[0] in ("Patient", "Condition")}
